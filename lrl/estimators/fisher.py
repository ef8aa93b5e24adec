"""Fisher-vector products of a policy network and the flat-parameter helpers natural-gradient methods need.

The Fisher matrix of a policy at θ is the Hessian of the mean KL between the policy at θ (held fixed) and the
policy at θ', taken at θ' = θ (Rossi eq. A.28, §7.8; Atreya eq. 20; Fragkiadaki "exactly equivalent to the
Hessian of KL"):

    F = ∇²_θ' mean_s KL(π_θ(·|s) ‖ π_θ'(·|s)) |_{θ'=θ}

It is never formed. Two matrix-free products are offered, both from Rossi §7.8:

* ``"hessian"`` (§7.8.2, eq. 7.62–7.63, "faster, recommended"): F v = ∇_θ'((∇_θ' mean KL)ᵀ v), double backprop
  with v detached (∇_θ' v = 0) and the old distribution computed without gradient.
* ``"jmj"`` (§7.8.1, eq. 7.52–7.61, Schulman et al. 2015 App. C1): F v = mean_s Jᵀ M J v, with J the Jacobian of
  the distribution parameters μ_θ'(s) and M the Hessian of the closed-form KL with respect to μ. Built from
  Jacobian- and Hessian-vector products of autograd; the network's own second derivatives never appear. This
  drops the term Σ (∂kl/∂μ)·∂²μ/∂θ'² of eq. 7.58, which vanishes only if the KL is stationary at μ = μ_old in
  the coordinates of ``dist_params``: true for free parameters (logits, mean and log-std), false for normalised
  log-probabilities. For those pass a ``kl`` that renormalises its second argument (``log_softmax``).

The KL is the policy head's closed form (``PolicyHead.kl``): it integrates over all actions of each sampled
state, not only the taken one (§7.8.1). Rossi §7.8.1 notes the product may use a subsample (~10 %) of the
states: pass the distribution parameters of that subsample. Damping (F + c I) is [NOT IN SEEDS]; it is TRPO
practice (Schulman et al. 2015, Spinning Up, SB3-contrib) that keeps CG stable when F is near-singular.
Under DDP pass ``reduce=all_reduce_mean`` so every rank works with the Fisher matrix of all ranks' states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.distributed as dist

Params = tuple[torch.Tensor, ...]
KLFn = Callable[[Params, Params], torch.Tensor]  # (old, new) distribution parameters -> KL(old ‖ new) per state


# --- flat parameters -------------------------------------------------------------------------------------------
def flat_params(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The parameters as one detached vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def set_flat_params_(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """Write a flat vector back into the parameters, in order (exact copy: restoring a saved vector is bitwise)."""
    total = sum(p.numel() for p in params)
    if total != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} entries, the parameters {total}")
    offset = 0
    for p in params:
        n = p.numel()
        p.copy_(flat[offset:offset + n].view_as(p))
        offset += n


def flat_grad(output: torch.Tensor, params: Sequence[torch.Tensor], *, retain_graph: bool | None = None,
              create_graph: bool = False) -> torch.Tensor:
    """∇ output as one vector; parameters the output does not depend on contribute zeros.

    As in ``torch.autograd.grad``, the graph is retained by default when ``create_graph`` is set.
    """
    grads = torch.autograd.grad(output, list(params), retain_graph=retain_graph, create_graph=create_graph,
                                allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params,
                                                                                         strict=True)])


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Average a tensor over the ranks of the default process group (in place); unchanged without one.

    The sum is formed once and every rank divides the same sum, so all ranks hold bitwise identical results.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
        t.div_(dist.get_world_size())
    return t


def subsample(n: int, fraction: float, generator: torch.Generator, device: torch.device | None = None
              ) -> torch.Tensor | None:
    """Indices of ``ceil(fraction · n)`` states drawn without replacement (Rossi §7.8.1), or None for all."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction >= 1.0:
        return None
    k = max(1, int(-(-fraction * n // 1)))
    return torch.randperm(n, generator=generator)[:k].sort().values.to(device)


def _vjp(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], grad_outputs: Sequence[torch.Tensor] | None,
         create_graph: bool = False) -> list[torch.Tensor]:
    """Σ_k grad_outputs_k · ∂outputs_k/∂inputs, graph retained; zeros for inputs the outputs do not depend on."""
    grads = torch.autograd.grad(list(outputs), list(inputs), grad_outputs=grad_outputs, retain_graph=True,
                                create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


# --- Fisher-vector products ------------------------------------------------------------------------------------
def mean_kl_to_detached(kl: KLFn, dist_params: Params) -> torch.Tensor:
    """mean_s KL(π_sg(θ)(·|s) ‖ π_θ(·|s)): zero in value, its Hessian at θ is the Fisher matrix."""
    return kl(tuple(t.detach() for t in dist_params), dist_params).mean()


def fisher_vector_product(kl: KLFn, dist_params: Params, params: Sequence[torch.Tensor], *,
                          damping: float = 0.0, method: Literal["hessian", "jmj"] = "hessian",
                          reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v ↦ (F + damping·I) v`` for the policy whose distribution parameters on a batch of states are
    ``dist_params`` (computed from ``params`` with the autograd graph kept).

    The returned closure may be called many times (CG); the graph is retained between calls.
    """
    params = list(params)
    if method == "hessian":
        # ∇_θ' mean KL, kept differentiable; at θ' = θ it is zero in value but not in derivative (§7.8.2)
        grad_kl = flat_grad(mean_kl_to_detached(kl, dist_params), params, create_graph=True)

        def product(v: torch.Tensor) -> torch.Tensor:
            return flat_grad(grad_kl.dot(v.detach()), params, retain_graph=True)
    elif method == "jmj":
        outputs = [t for t in dist_params if t.requires_grad]
        # M: Hessian of the closed-form KL w.r.t. the distribution parameters, used through products (§7.8.1)
        mu = [t.detach().requires_grad_() for t in outputs]
        kl_grad = torch.autograd.grad(mean_kl_to_detached(kl, tuple(mu)), mu, create_graph=True)
        # J v by the double-vjp trick: Jᵀu is linear in u, so ∂/∂u ⟨Jᵀu, v⟩ = J v
        dummies = [torch.zeros_like(t, requires_grad=True) for t in outputs]
        jt_u = torch.cat([g.reshape(-1) for g in _vjp(outputs, params, dummies, create_graph=True)])

        def product(v: torch.Tensor) -> torch.Tensor:
            jv = _vjp([jt_u.dot(v.detach())], dummies, None)
            linear = not any(t.requires_grad for t in kl_grad)  # KL linear in these coordinates: M = 0
            m_jv = [torch.zeros_like(m) for m in mu] if linear else _vjp(list(kl_grad), mu, jv)
            return torch.cat([g.reshape(-1) for g in _vjp(outputs, params, m_jv)])
    else:
        raise ValueError(f"unknown Fisher-vector product method {method!r}")

    def fvp(v: torch.Tensor) -> torch.Tensor:
        out = product(v)
        if reduce is not None:
            out = reduce(out)
        return out + damping * v if damping else out

    return fvp
