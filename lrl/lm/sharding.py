"""Fully sharded data parallel for the language-model stages (``trainer.strategy: fsdp``; docs/lm-rlhf.md).

FSDP2 (``torch.distributed.fsdp.fully_shard``) through Lightning's ``ModelParallelStrategy``, data parallel only:
every process holds a shard of each language model's parameters, gradients and Adam state and gathers a layer's
parameters only while it runs. Each model is sharded per transformer block (the classes its ``transformers`` class
names in ``_no_split_modules``), a reward or value model's body and score head each as a unit (they are called
on their own), and at the root (embeddings, head, tied weights), the frozen ones (π^SFT and r̂ in
``rlhf-ppo``) too: they need no gradient but take the same memory.

What changes for the modules (:func:`shard_models` in their ``configure_model``):
- every rank must run every forward of a sharded model (its layers are gathered collectively): generation runs to
  the longest response on every rank (``synced_gpus``), evaluation samples on every rank (rank 0 logs);
- checkpoints are one full file as without FSDP (gathered on rank 0) and resume exactly under FSDP, or under DDP
  (``lrl resume RUN trainer.strategy=ddp``); a checkpoint written without FSDP does not resume under it (its
  optimiser state is per index, not per parameter name: ``lrl resume`` says so); the final ``model/`` directory is
  gathered the same way (:func:`save_final`, called on every rank).

Lightning's own ``FSDPStrategy`` (FSDP1) is refused without CUDA; FSDP2 runs on CPU processes (gloo) too, which is
how the tests check it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.strategies import ModelParallelStrategy


class ShardedDataParallel(ModelParallelStrategy):
    """``ModelParallelStrategy`` with all processes on the data-parallel axis (no tensor parallelism) and checkpoints
    as single full files (``save_distributed_checkpoint=False``), the format every other lrl run writes."""

    def __init__(self) -> None:
        super().__init__(data_parallel_size=1, tensor_parallel_size=1, save_distributed_checkpoint=False)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes  # the world, known once devices are set
        self._tensor_parallel_size = 1
        super().setup_environment()

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        # lrl's checkpoints hold numpy RNG states, so they load as lrl trusts its own files elsewhere
        # (``weights_only=False``); Lightning's restore path drops the flag ``fit`` was given on the way here
        return super().load_checkpoint(checkpoint_path, weights_only=False)


def sharded(pl_module: Any) -> bool:
    """Whether :func:`shard_models` sharded this module's models (a run with ``trainer.strategy: fsdp``)."""
    return bool(getattr(pl_module, "_lrl_sharded", False))


def shard_models(pl_module: Any, *models: Any) -> None:
    """Shard ``models`` (``transformers`` models; None skipped) over the data-parallel mesh Lightning gives
    ``pl_module`` under :class:`ShardedDataParallel`; nothing without one, nothing the second time."""
    mesh = getattr(pl_module, "_device_mesh", None)
    if mesh is None or sharded(pl_module):
        return
    from torch.distributed.fsdp import fully_shard

    dp = mesh["data_parallel"]
    for model in models:
        if model is None:
            continue
        blocks = set(getattr(model, "_no_split_modules", None) or ())
        for sub in model.modules():
            if sub is not model and type(sub).__name__ in blocks:
                fully_shard(sub, mesh=dp)
        if hasattr(model, "score"):  # reward and value models: body and head are also called on their own
            fully_shard(model.base_model, mesh=dp)
            fully_shard(model.score, mesh=dp)
        fully_shard(model, mesh=dp)
    pl_module._lrl_sharded = True


def _unsharded_class(model: Any) -> type:
    from torch.distributed.fsdp import FSDPModule

    cls = type(model)
    return next(c for c in cls.__mro__ if c is not cls and not issubclass(c, FSDPModule)) \
        if isinstance(model, FSDPModule) else cls


def save_final(pl_module: Any, model: Any, tokenizer: Any, out: Path) -> Path | None:
    """``model`` and ``tokenizer`` as a ``transformers`` directory ``out`` (rank 0 writes; None elsewhere). Call it
    on every rank: under FSDP the full parameters are gathered first (a collective)."""
    from lrl.lm.models import save_model

    state = None
    if sharded(pl_module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not pl_module.trainer.is_global_zero:
        return None
    if state is not None:  # a plain copy of the model class, so the directory reads as any other
        plain = _unsharded_class(model)(model.config)
        plain.load_state_dict(state)
        model = plain
    return save_model(model, tokenizer, out)
