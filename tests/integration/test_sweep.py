"""``lrl sweep``: an Optuna study of real (tiny) training runs, with pruning, a shared storage, nested MLflow runs and
the best recipe; bad search spaces refused in one line before anything is written."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from typer.testing import CliRunner

from lrl.cli import app
from lrl.errors import RecipeError
from lrl.recipe import load, shipped_recipes
from lrl.recipe.load import find_recipe, read_yaml, recipes_dir
from lrl.sweep import check_space, find_space, parse_space
from tests.conftest import run_lrl

runner = CliRunner()
TINY = ["budget.frames=1024", "eval.every=256", "eval.episodes=2", "checkpoint.every=0"]
# CartPole episodes cut at 5 steps return at most 5; the pole cannot fall before ~8 steps, so a 200-step trial
# always evaluates higher: the 5-step trials are the bad ones, whatever the learning rate does in 1,024 frames
SPACE = {"algo.lr": {"type": "log_uniform", "low": 1.0e-4, "high": 3.0e-3},
         "env.max_episode_steps": {"type": "categorical", "choices": [200, 5]}}


def _journal(study: str) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(JournalFileBackend(f"sweeps/{study}/journal.log"))


def _runs(experiment: str) -> list:
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client.search_runs([exp.experiment_id])


def test_sweep_prunes_nests_runs_and_writes_the_best_recipe() -> None:
    Path("space.yaml").write_text(yaml.safe_dump(SPACE))
    # the trials' values fixed in advance (Optuna's enqueue_trial) make the pruning deterministic: with one finished
    # trial as the median, the 5-step trials fall below it at their first evaluation; trial 2 repeats trial 0 exactly
    # (same recipe, same seed) and ties the median, which does not prune
    Path("sweeps/s").mkdir(parents=True)
    pre = optuna.create_study(study_name="s", storage=_journal("s"), direction="maximize")
    for steps in (200, 5, 200, 5):
        pre.enqueue_trial({"algo.lr": 1.0e-3, "env.max_episode_steps": steps})
    out = run_lrl("sweep", "ppo/cartpole", "--space", "space.yaml", "--trials", "4", "--study", "s",
                  "--startup-trials", "1", "--experiment", "sweep-prune", *TINY)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "2 complete, 2 pruned, 0 failed" in out.stderr

    study = optuna.load_study(study_name="s", storage=_journal("s"))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE,
                                         TrialState.PRUNED]
    assert sorted(trials[0].intermediate_values) == [256, 512, 768, 1024]  # every evaluation, at its frame count
    assert list(trials[1].intermediate_values) == [256] and trials[1].intermediate_values[256] <= 5
    assert trials[0].intermediate_values == trials[2].intermediate_values
    assert trials[0].value == trials[0].intermediate_values[1024]  # the value: the final eval/return_mean
    assert all((Path("sweeps/s") / f"trial-{t.number}" / "recipe.yaml").is_file() for t in trials)

    runs = _runs("sweep-prune")
    parent = next(r for r in runs if r.info.run_name == "sweep-s")
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == ["trial-0", "trial-1", "trial-2", "trial-3"] and len(runs) == 5
    for t in trials:
        child = children[f"trial-{t.number}"]
        assert float(child.data.params["algo.lr"]) == t.params["algo.lr"]
        assert child.data.params["env.max_episode_steps"] == str(t.params["env.max_episode_steps"])
        assert child.data.tags["lrl.sweep.state"] == t.state.name
        assert child.info.status == ("KILLED" if t.state == TrialState.PRUNED else "FINISHED")
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_value"] == study.best_value
    assert parent.data.tags["best.env.max_episode_steps"] == "200" and parent.data.tags["best_trial"] == "0"
    assert {a.path for a in MlflowClient().list_artifacts(parent.info.run_id)} >= {"best_recipe.yaml",
                                                                                   "search_space.yaml"}

    best = Path("sweeps/s-best.yaml")
    assert best.is_file() and yaml.safe_load(best.read_text())["env"]["max_episode_steps"] == 200
    dry = runner.invoke(app, ["train", str(best), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    resolved = yaml.safe_load(dry.stdout)
    assert resolved["algo"]["lr"] == 1.0e-3 and resolved["env"]["max_episode_steps"] == 200
    assert resolved["budget"]["frames"] == 1024 and resolved["tracking"]["run_name"] is None


def test_workers_and_a_rerun_share_one_study() -> None:
    Path("space.yaml").write_text(yaml.safe_dump(SPACE))
    args = ["sweep", "ppo/cartpole", "--space", "space.yaml", "--study", "j", "--pruner", "none",
            "--experiment", "sweep-join", *TINY, "budget.frames=512"]
    first = run_lrl(*args, "--trials", "2", "--jobs", "2")  # two worker processes on the study
    assert first.returncode == 0, first.stderr
    study = optuna.load_study(study_name="j", storage=_journal("j"))
    before = study.get_trials()
    assert len(before) == 2 and all(t.state == TrialState.COMPLETE for t in before)
    assert Path("sweeps/j-best.yaml").is_file()  # the study has its 2 trials: the best recipe is out

    again = run_lrl(*args, "--trials", "3")  # a second command joins the study and adds only the missing trial
    assert again.returncode == 0, again.stderr
    after = optuna.load_study(study_name="j", storage=_journal("j")).get_trials()
    assert [t.number for t in after] == [0, 1, 2] and all(t.state == TrialState.COMPLETE for t in after)
    assert [(t.params, t.value) for t in after[:2]] == [(t.params, t.value) for t in before]  # kept, not rerun
    assert "trial 2:" in again.stderr and "trial 0:" not in again.stderr

    runs = _runs("sweep-join")
    parents = [r for r in runs if r.info.run_name == "sweep-j"]
    assert len(parents) == 1  # the rerun found the sweep's parent run through the study
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == ["trial-0", "trial-1", "trial-2"]
    best = yaml.safe_load(Path("sweeps/j-best.yaml").read_text())
    top = max(after, key=lambda t: t.value)
    assert best["algo"]["lr"] == top.params["algo.lr"]


@pytest.mark.parametrize(
    ("space", "extra", "fragment"),
    [
        ({"algo.lrr": {"type": "uniform", "low": 0.1, "high": 0.2}}, [], "algo.lrr: unknown key"),
        ({"algo.lr": {"type": "log_uniform", "low": 1.0e-2, "high": 1.0e-3}}, [], "low (0.01) must be below high"),
        ({"algo.lr": {"type": "log_uniform", "low": 0.0, "high": 1.0e-3}}, [], "a log scale needs low > 0"),
        ({"algo.epochs": {"type": "int", "low": 5, "high": 5}}, [], "low (5) must be below high (5)"),
        ({"algo.activation": {"type": "categorical", "choices": []}}, [], "choices must be a non-empty list"),
        ({"algo.lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-3}}, [], "unknown type 'loguniform'"),
        ({"algo.lr": {"type": "uniform", "low": 1.0e-4, "hi": 1.0e-3}}, [], "unknown field hi"),
        ({"algo.gamma": {"type": "uniform", "low": 0.9, "high": 1.5}}, [], "algo.gamma=1.5"),  # outside the recipe's
        ({"algo.lr": {"type": "uniform", "low": 1.0e-4, "high": 1.0e-3}}, ["--pruner", "mean"], "--pruner mean"),
        ({"algo.lr": {"type": "uniform", "low": 1.0e-4, "high": 1.0e-3}}, ["algo.lrr=1"], "algo.lrr: unknown key"),
    ],
)
def test_bad_search_spaces_fail_in_one_line_and_write_nothing(space: dict, extra: list[str], fragment: str) -> None:
    Path("bad.yaml").write_text(yaml.safe_dump(space))
    result = runner.invoke(app, ["sweep", "ppo/cartpole", "--space", "bad.yaml", "--trials", "2",
                                 "--experiment", "sweep-bad", *extra])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not Path("sweeps").exists() and MlflowClient().get_experiment_by_name("sweep-bad") is None


def test_shipped_spaces_fit_their_recipes_and_are_not_recipes() -> None:
    spaces = sorted(p.stem for p in (recipes_dir() / "spaces").glob("*.yaml"))
    assert spaces == ["ppo-cartpole", "sac-pendulum"]
    for name in spaces:
        recipe_ref = name.replace("-", "/", 1)
        path = find_space(None, load(recipe_ref), recipe_ref)
        assert path.stem == name
        params = parse_space(yaml.safe_load(path.read_text()), str(path))
        check_space(read_yaml(find_recipe(recipe_ref)), params, str(path), recipe_ref)  # raises if a key or end is bad
    assert not any(n.startswith("spaces/") for n in shipped_recipes())
    with pytest.raises(RecipeError, match="search space"):
        find_recipe("spaces/ppo-cartpole")
    with pytest.raises(RecipeError, match="no shipped search space for recipe dqn/cartpole"):
        find_space(None, load("dqn/cartpole"), "dqn/cartpole")
