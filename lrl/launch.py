"""Recipe → Trainer + LightningModule + LightningDataModule + callbacks + logger → fit.

``train`` starts a run, ``resume`` continues one from a checkpoint (same run directory, same MLflow run),
``evaluate_run`` evaluates a checkpoint. Everything that can be checked is checked before anything is
written: a bad recipe, environment, checkpoint or tracking server leaves no run directory behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lrl.errors import LrlError, RecipeError
from lrl.recipe import Recipe, dump, load, validate
from lrl.recipe.load import apply_overrides
from lrl.recipe.schema import algo_arguments

log = logging.getLogger("lrl")

RUN_DIR_ENV = "LRL_RUN_DIR"  # rank 0 hands its run directory to the DDP processes it launches
RESUMABLE_KEYS = ("budget.", "trainer.", "eval.", "checkpoint.", "tracking.log_every", "tracking.log_model",
                  "tracking.register_model")


@dataclass
class RunResult:
    run_dir: Path
    clock: int  # where the run stopped, in its recipe's clock unit
    interrupted: bool
    eval: dict[str, Any] | None
    mlflow_run_id: str | None
    clock_unit: str = "frames"


def _is_child_rank() -> bool:
    """Not global rank 0: a process Lightning launched (``LOCAL_RANK``), any process of a node but the first
    (``NODE_RANK``, torchrun's ``GROUP_RANK``), or a rank torchrun (``RANK``) or SLURM (``SLURM_PROCID``) started."""
    return any(os.environ.get(var, "0").strip() not in ("", "0")
               for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"))


def _started_externally(recipe: Recipe) -> bool:
    """The processes of a several-process run are started by torchrun, SLURM or the user (one per node at least),
    not by Lightning from one command: each computes its own default run directory, so they must be given one.
    Decided from what every rank sees alike (the recipe, the launcher's world size), so all ranks agree."""
    from lrl.recipe.load import world_size

    if (world_size(recipe.trainer) or 1) < 2:
        return False
    nodes = recipe.trainer.get("num_nodes", 1)
    launched = [os.environ.get(var, "") for var in ("WORLD_SIZE", "SLURM_NTASKS")]
    return (isinstance(nodes, int) and nodes > 1) or any(v.isdigit() and int(v) > 1 for v in launched)


def _default_run_dir(recipe: Recipe) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / recipe.name / stamp


def default_run_name(recipe: Recipe) -> str:
    """The MLflow run name when ``tracking.run_name`` is unset: runs of one recipe told apart by seed and start time.
    Only a new run's rank 0 creates the MLflow run, so the name is set once (other ranks and resumes reuse the run)."""
    return f"{recipe.name}-s{recipe.seed}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def probe_spec(recipe: Recipe) -> Any:
    """The spec from the source itself (an env probe, a dataset's metadata), checked against what the algorithm
    consumes (docs/contract.md §2-3)."""
    from lrl.recipe.registry import algorithm_class, datamodule_class

    cls = algorithm_class(recipe.algo["name"])
    data = {k: v for k, v in recipe.data.items() if k != "name"}
    spec = datamodule_class(recipe.data["name"]).probe_spec(recipe.env, data)
    name = recipe.algo["name"]
    if spec.action_kind not in cls.consumes.actions:
        raise RecipeError(f"algo.name={name} needs {' or '.join(cls.consumes.actions)} actions, but {spec.id} has "
                          f"{spec.action_kind} actions; pick another algorithm or environment")
    if spec.obs_kind not in cls.consumes.observations:
        raise RecipeError(f"algo.name={name} takes {' or '.join(cls.consumes.observations)} observations, but "
                          f"{spec.id} has {spec.obs_kind} observations; pick another algorithm or source")
    image = spec.obs_kind == "image"
    if recipe.algo.get("encoder") is not None and not image:
        raise RecipeError(f"algo.encoder={recipe.algo['encoder']}: {spec.id} has {spec.obs_kind} observations; a CNN "
                          "encoder is for image observations only (remove algo.encoder)")
    if image and recipe.env is not None and recipe.env.normalize_obs:
        raise RecipeError(f"env.normalize_obs: {spec.id} has image observations, which networks scale to [0, 1] "
                          "themselves; set env.normalize_obs=false")
    return spec




def init_from_state(recipe: Recipe, spec: Any) -> dict[str, Any] | None:
    """The policy that ``algo.init_from`` names (a run directory or checkpoint), checked against this recipe before
    anything is written; None without ``init_from``. One :class:`RecipeError` line when the checkpoint is missing,
    its algorithm has no stochastic MLP policy, it was trained on other observations or actions (``spec``), its
    policy's layers differ from this recipe's (hidden sizes, activation, head), or the two runs disagree on
    observation normalisation: a policy's weights are only meaningful on the inputs it was trained on, and
    behavioural cloning sees raw observations. When both normalise, this run's statistics start afresh from its
    own first rollout (the source's are not carried over)."""
    ref = recipe.algo.get("init_from")
    if ref is None:
        return None
    from lrl.evaluate import load_checkpoint, policy_from_checkpoint
    from lrl.recipe.registry import algorithm_class, datamodule_class
    from lrl.spec import spec_differences

    what = f"algo.init_from={ref}"
    try:
        ckpt = load_checkpoint(ref)[1]
        source = policy_from_checkpoint(ckpt)
    except LrlError as err:
        raise RecipeError(f"{what}: {err.message}") from None
    src_algo = ckpt["lrl"]["recipe"]["algo"]["name"]
    src_net = source.module.policy_network()
    if src_net is None:
        raise RecipeError(f"{what}: its algorithm ({src_algo}) has no stochastic MLP policy to start from")
    diff = spec_differences(spec, source.spec)
    if diff is not None:
        mine, theirs = diff
        raise RecipeError(f"{what}: that run learned on {source.spec.id} ({theirs}), this recipe's data is {spec.id} "
                          f"({mine})")
    target = algorithm_class(recipe.algo["name"])(spec, **algo_arguments(recipe.algo)).policy_network()
    assert target is not None  # validate() refused init_from into an algorithm without one
    theirs_layers, mine_layers = src_net.policy_layers(), target.policy_layers()
    if theirs_layers != mine_layers:
        raise RecipeError(f"{what}: its policy ({' '.join(theirs_layers)}) differs from this recipe's "
                          f"({' '.join(mine_layers)}); set algo.hidden / algo.activation as that run did")
    normalises = bool(recipe.env is not None and recipe.env.normalize_obs
                      and datamodule_class(recipe.data["name"]).needs_env)
    if normalises != (source.obs_stats is not None):
        raise RecipeError(f"{what}: that run's policy saw {'normalised' if source.obs_stats is not None else 'raw'} "
                          f"observations but this recipe {'normalises' if normalises else 'does not normalise'} "
                          f"them; set env.normalize_obs={str(not normalises).lower()}")
    return src_net.policy_state()


def _strategy(recipe: Recipe, module: Any) -> Any:
    strategy = recipe.trainer.get("strategy", "auto")
    if strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=getattr(module, "ddp_find_unused_parameters", False))
    if strategy == "fsdp":
        if not getattr(module, "shards_models", False):
            raise RecipeError(f"trainer.strategy=fsdp shards language models (lm-sft, lm-reward, rlhf-ppo); "
                              f"{recipe.algo['name']}'s networks fit on every device: use trainer.strategy=ddp")
        from lrl.lm.sharding import ShardedDataParallel

        return ShardedDataParallel()
    return strategy


def _quiet() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed", "lightning.pytorch.utilities.migration.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|checkpoint that ended before|"
                            "has `shuffle=True`|Starting from v1.9.0|is an infinite|MLFlowLogger|"
                            "`training_step` returned `None`|You're resuming from a checkpoint|"
                            "dataloader_iter|LeafSpec).*")
    # FSDP2 warns that a sharded body returns a view, whose in-place change would skip its backward hook; no lrl loss
    # changes model outputs in place (test_rlhf_ppo checks FSDP's training against DDP's)
    warnings.filterwarnings("ignore", message=".*returned a view tensor.*")


def _threads() -> None:
    """One torch thread per process unless ``LRL_NUM_THREADS`` (or ``OMP_NUM_THREADS``) says otherwise.

    Measured on 2 cores (benchmarks/README.md, "Torch threads per process"): a second thread gains nothing for the
    small MLPs of most recipes and 1.2× for SAC's 256-wide update on an idle machine, but next to one other busy
    process every family ran 2-2.7× slower with two threads (spinning OpenMP threads waiting for a core). One thread
    never collapses; ``LRL_NUM_THREADS=N`` buys the idle-machine gain back where it is wanted.
    """
    import torch

    for var in ("LRL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit() and int(os.environ[var]) > 0:
            torch.set_num_threads(int(os.environ[var]))
            return
    torch.set_num_threads(1)


def run(recipe: Recipe, run_dir: Path, tracking_uri: str, ckpt_path: Path | None = None,
        mlflow_run_id: str | None = None, init_state: dict[str, Any] | None = None,
        callbacks: list[Any] | None = None, tags: dict[str, str] | None = None) -> RunResult:
    """Build everything from a validated recipe and fit. Rank 0 writes; other ranks only compute. ``init_state``:
    the policy a new run starts from (:func:`init_from_state`); a resumed run takes its policy from ``ckpt_path``.
    ``callbacks``: extra Lightning callbacks, called after lrl's own (they see this step's evaluation);
    ``tags``: extra MLflow tags of a new run (``mlflow.parentRunId`` nests it under another run)."""
    import lightning as L

    from lrl.callbacks import ClockCheckpoint, ClockProgress, Evaluation, RunInfo
    from lrl.contract import schedule_of
    from lrl.recipe.registry import algorithm_class, datamodule_class
    from lrl.runs import run_ended, run_started
    from lrl.tracking import log_run_artifacts, make_logger
    from lrl.tracking.mlflow import flatten, parent_tags

    _quiet()
    _threads()
    spec = probe_spec(recipe)
    L.seed_everything(recipe.seed, workers=False, verbose=False)
    algo_cls = algorithm_class(recipe.algo["name"])
    algo = algo_arguments(recipe.algo)
    module = algo_cls(spec, **algo)
    if init_state is not None and ckpt_path is None:
        module.load_policy_state(init_state)  # every rank loads the same weights
    module.log_every = recipe.tracking.log_every
    data = {k: v for k, v in recipe.data.items() if k != "name"}
    budget, unit = recipe.budget.amount, recipe.budget.unit
    datamodule = datamodule_class(recipe.data["name"])(
        env=recipe.env, spec=spec, seed=recipe.seed, budget=budget, clock_unit=unit,
        schedule=schedule_of(algo, algo_cls.consumes), **data)
    if ckpt_path is not None and hasattr(datamodule, "resume_dir"):
        datamodule.resume_dir = ckpt_path.parent  # per-rank sidecars (replay buffers) live next to the checkpoint

    tags = {**(parent_tags() if mlflow_run_id is None else {}), **(tags or {}), "lrl.run_dir": str(run_dir.resolve())}
    # only global rank 0 talks to MLflow: building a client opens (and on a fresh sqlite store creates) the store,
    # which ranks started at once on several nodes would race on; the other ranks' loggers would log nothing anyway
    logger: Any = None if _is_child_rank() else make_logger(
        tracking_uri, recipe.tracking.experiment, recipe.tracking.run_name or default_run_name(recipe),
        run_id=mlflow_run_id, tags=tags)
    ckpt_cb = ClockCheckpoint(run_dir / "checkpoints", budget, recipe.checkpoint.every, unit,
                              recipe.checkpoint.every_minutes,
                              first=ckpt_path is None and recipe.checkpoint.every_minutes > 0)
    eval_cb = Evaluation(recipe.env, recipe.eval, recipe.seed, lambda: ckpt_cb.reached_budget) if recipe.env else None
    if eval_cb is None and hasattr(datamodule, "evaluation"):  # a source without an env that evaluates (prompts)
        eval_cb = datamodule.evaluation(recipe.eval, recipe.seed, lambda: ckpt_cb.reached_budget)
    callbacks = [ckpt_cb, *([eval_cb] if eval_cb else []), ClockProgress(budget, unit),
                 RunInfo(recipe.to_dict(), spec, run_dir, tracking_uri), *(callbacks or [])]
    if recipe.rlhf is not None:  # learning from preferences: the module relabels every rollout (docs/rlhf.md)
        from lrl.rlhf.learner import PreferenceLearner
        module.attach_reward_learner(PreferenceLearner(
            recipe.rlhf, spec, recipe.env, run_dir, recipe.seed, f"{recipe.name}/{run_dir.resolve().name}",
            module.discount if module.discount is not None else 0.99, budget))
    trainer_kwargs = {k: v for k, v in recipe.trainer.items() if k != "strategy"}
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer = L.Trainer(
            **trainer_kwargs, strategy=_strategy(recipe, module), logger=logger or False, callbacks=callbacks,
            max_epochs=-1, max_steps=-1, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
            use_distributed_sampler=False, default_root_dir=str(run_dir), log_every_n_steps=1_000_000,
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError, ImportError) as err:
        raise RecipeError(f"trainer: {err}") from None
    # before any process is launched: one error line, not one per rank
    datamodule.check_args(data, recipe.env, schedule_of(algo, algo_cls.consumes), algo_cls.consumes,
                          trainer.world_size, budget)
    if trainer.is_global_zero and mlflow_run_id is None:
        logger.log_hyperparams(flatten(recipe.to_dict()))
    if trainer.is_global_zero:
        if mlflow_run_id is not None:
            _mark_running(logger)
        run_started(run_dir, logger.run_id, tracking_uri)  # from here a kill -9 is recognised (lrl runs, lrl resume)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None,
                    weights_only=False)
    except BaseException as err:
        if trainer.is_global_zero:
            run_ended(run_dir, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        if isinstance(err, KeyboardInterrupt):
            raise LrlError("aborted without a checkpoint (second Ctrl-C); the last periodic checkpoint is "
                           "intact") from None
        raise
    _close_process_group()
    if not trainer.is_global_zero:
        return RunResult(run_dir, datamodule.final_clock, ckpt_cb.interrupted, None, None, unit)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt_cb.interrupted:
        log_run_artifacts(logger, run_dir, last)
        if recipe.tracking.log_model:
            _log_model(recipe, trainer, module, tracking_uri, logger.run_id)
    logger.finalize("KILLED" if ckpt_cb.interrupted else "success")
    result = eval_cb.last if eval_cb else None
    run_ended(run_dir, "KILLED" if ckpt_cb.interrupted else "FINISHED", datamodule.final_clock, result)
    return RunResult(run_dir, datamodule.final_clock, ckpt_cb.interrupted, result, logger.run_id, unit)


def _close_process_group() -> None:
    """Every rank leaves the process group once training has ended well: left to the interpreter's exit, gloo's
    worker threads can abort the process ("terminate called without an active exception") after a run that
    finished. Not after a failure: a rank still in a collective would hang the others' teardown."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _mark_running(logger: Any) -> None:
    """A resumed MLflow run is RUNNING again until it ends (it was FINISHED, or KILLED by ``lrl runs``)."""
    try:
        logger.experiment.update_run(logger.run_id, status="RUNNING")
    except Exception as err:
        log.warning("could not mark MLflow run %s RUNNING again (%s)", logger.run_id, type(err).__name__)


def _log_model(recipe: Recipe, trainer: Any, module: Any, tracking_uri: str, run_id: str) -> None:
    """The finished policy as the run's MLflow pyfunc model (:mod:`lrl.export`); warns, never raises."""
    from lrl.contract import data_source
    from lrl.evaluate import Policy
    from lrl.export import log_policy_model

    clip_obs = recipe.env.clip_obs if recipe.env is not None else 10.0
    policy = Policy(module, data_source(trainer).observation_stats(), clip_obs, deterministic=True)
    log_policy_model(policy, tracking_uri, run_id, recipe.tracking.register_model)


def train(recipe_ref: str | Recipe, overrides: list[str] | None = None, run_dir: str | Path | None = None,
          tracking_uri: str | None = None, dry_run: bool = False, callbacks: list[Any] | None = None,
          tags: dict[str, str] | None = None) -> RunResult | Recipe:
    """Train a recipe (a shipped name, a YAML path, or an already validated :class:`Recipe`, which ``overrides``
    do not apply to). ``callbacks`` and ``tags``: see :func:`run`."""
    from lrl.tracking import check_reachable, resolve_tracking_uri

    quiet_libraries()
    recipe = recipe_ref if isinstance(recipe_ref, Recipe) else load(recipe_ref, overrides or [])
    init_state = init_from_state(recipe, probe_spec(recipe))
    uri = resolve_tracking_uri(tracking_uri, recipe.tracking.tracking_uri)
    if dry_run:
        return recipe
    child = _is_child_rank()
    if run_dir is None and not (child and os.environ.get(RUN_DIR_ENV)) and _started_externally(recipe):
        raise RecipeError("a run on several nodes, or under torchrun or SLURM, needs --run-dir DIR: the same "
                          "directory for every process, on a filesystem all nodes share")
    if not child:
        check_reachable(uri)
    if child and os.environ.get(RUN_DIR_ENV):
        rd = Path(os.environ[RUN_DIR_ENV])
    else:
        rd = Path(run_dir) if run_dir else _default_run_dir(recipe)
        # safe on every rank: rank 0 writes its first checkpoint only once all ranks have joined the process group
        if (rd / "checkpoints").exists() and any((rd / "checkpoints").iterdir()):
            raise LrlError(f"run directory {rd} already holds checkpoints; use `lrl resume {rd}` or another --run-dir")
        if not child and (rd / "run.json").is_file():  # a run killed before its first checkpoint, started again
            from lrl.runs import settle

            settle(rd, quiet=True)
        os.environ[RUN_DIR_ENV] = str(rd)
    if not child:
        (rd / "checkpoints").mkdir(parents=True, exist_ok=True)
        (rd / "recipe.yaml").write_text(dump(recipe))
    try:
        return run(recipe, rd, uri, init_state=init_state, callbacks=callbacks, tags=tags)
    except BaseException:
        # a run that waited for people's labels keeps its preference store (a restart in this --run-dir uses it)
        kept = (rd / "preferences" / "queries.jsonl").exists()
        if not child and not any((rd / "checkpoints").iterdir()) and not kept:
            shutil.rmtree(rd, ignore_errors=True)  # nothing half-written: a run that never checkpointed leaves nothing
        raise


def resume(target: str | Path, overrides: list[str] | None = None, tracking_uri: str | None = None) -> RunResult:
    from lrl.errors import RunStateError
    from lrl.evaluate import load_checkpoint
    from lrl.runs import settle
    from lrl.tracking import check_reachable

    quiet_libraries()
    if Path(target).is_dir() and not _is_child_rank():
        settle(Path(target), quiet=True)  # a run whose process died without a word: MLflow KILLED, not RUNNING
    ckpt_path, ckpt = load_checkpoint(target, warn=not _is_child_rank())
    info = ckpt["lrl"]
    for text in overrides or []:
        if not text.startswith(RESUMABLE_KEYS):
            raise RecipeError(f"override '{text}': a resumed run keeps its algorithm, environment and data; only "
                              f"{', '.join(k.rstrip('.') for k in RESUMABLE_KEYS)} can change")
    recipe = validate(apply_overrides(info["recipe"], overrides or []), source=f"checkpoint {ckpt_path}")
    if recipe.trainer.get("strategy") == "fsdp" and (info["recipe"].get("trainer") or {}).get("strategy") != "fsdp":
        raise RecipeError("trainer.strategy=fsdp: this checkpoint was written without FSDP and its optimiser state "
                          "loads only unsharded; resume it with its own strategy (an FSDP checkpoint resumes "
                          "under FSDP or DDP)")
    clock = info["clock"] if "clock" in info else info["frames"]  # "frames": checkpoints before Contract v2
    if clock >= recipe.budget.amount:
        unit = recipe.budget.unit
        raise RunStateError(f"the run already reached budget.{unit}={recipe.budget.amount} (at {clock}); pass "
                            f"budget.{unit}=K>{clock} to extend it")
    uri = tracking_uri or info.get("tracking_uri") or recipe.tracking.tracking_uri
    if uri is None:
        from lrl.tracking import resolve_tracking_uri

        uri = resolve_tracking_uri(None, None)
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    if not _is_child_rank():
        check_reachable(uri)
        os.environ[RUN_DIR_ENV] = str(run_dir)
        (run_dir / "recipe.yaml").write_text(dump(recipe))
    return run(recipe, run_dir, uri, ckpt_path=ckpt_path, mlflow_run_id=info.get("mlflow_run_id"))


def evaluate_run(target: str | Path, episodes: int = 20, seed: int = 0, video_dir: str | Path | None = None,
                 deterministic: bool = True) -> dict[str, Any]:
    import torch

    from lrl.evaluate import evaluate, load_checkpoint, policy_from_checkpoint

    ckpt_path, ckpt = load_checkpoint(target)
    recipe = validate(ckpt["lrl"]["recipe"], source=f"checkpoint {ckpt_path}")
    if recipe.env is None:
        raise RecipeError(f"checkpoint {ckpt_path}: its recipe has no env: section to evaluate in")
    # Building the policy draws initial weights and sampled actions draw too: both stay off the caller's torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # sampled actions (deterministic=False) repeat with the same seed
        policy = policy_from_checkpoint(ckpt, deterministic)
        result = evaluate(policy, recipe.env, episodes, seed, Path(video_dir) if video_dir else None)
    info = ckpt["lrl"]
    result.update({"checkpoint": str(ckpt_path), "clock": info.get("clock", info.get("frames")),
                   "clock_unit": info.get("clock_unit", "frames"), "env": recipe.env.id})
    return result


def quiet_libraries() -> None:
    """Libraries' INFO lines stay off the console, lrl's own stay on: MLflow's ("Creating initial MLflow database
    tables", "Updating database tables" on a fresh sqlite store), alembic's migrations, TorchRL's ("Initialized
    LazyTensorStorage"), PyOpenGL's ("No OpenGL_accelerate module loaded", when MuJoCo or an env renders). MLflow and
    TorchRL set their loggers' levels from these variables when first imported (a user's own setting wins); loggers
    already set up are turned down here."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic", "torchrl", "OpenGL"):
        if logging.getLogger(name).getEffectiveLevel() < logging.WARNING:
            logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning.pytorch").propagate = False  # it has its own handler: no duplicate lines
    quiet_libraries()
