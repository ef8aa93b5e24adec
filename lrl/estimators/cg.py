"""Conjugate gradient for ``A x = b`` with a matrix-free product ``v ↦ A v`` (Rossi App. B Alg. b.1, §7.9).

Natural-gradient methods need ``x = F⁻¹ g`` where F, the Fisher matrix of a policy network, has as many rows
as the network has parameters: it is never formed, only multiplied with vectors (Fragkiadaki TRPO: "CG with n_cg
iterations"). CG needs one product per iteration; ``A p_k`` and ``r_kᵀ r_k`` are computed once per iteration and
reused for α_k, the residual update and β_k (Rossi B.4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


class CGResult(NamedTuple):
    x: torch.Tensor  # the approximate solution
    iterations: int  # products A·p evaluated
    residual_sq: torch.Tensor  # ‖b − A x‖² tracked by the recursion r_{k+1} = r_k − α_k A p_k


def conjugate_gradient(avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *,
                       max_iterations: int = 10, residual_tol: float = 1e-10,
                       x0: torch.Tensor | None = None) -> CGResult:
    """Solve ``A x = b`` for symmetric positive (semi-)definite A given only ``avp(v) = A v`` (Alg. b.1).

    Starts from ``x0`` (default 0, so r_0 = b and no product is spent on it) and stops after
    ``max_iterations`` products or once ‖r‖² ≤ ``residual_tol``. In exact arithmetic it terminates in at most
    n = ``b.numel()`` iterations. The stopping test reads one scalar per iteration (a host sync on GPU); under
    DDP every rank sees identical all-reduced vectors, so every rank stops at the same iteration.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b.clone() if x0 is None else b - avp(x)
    p = r.clone()
    rr = r.dot(r)
    done = 0
    while done < max_iterations and rr.item() > residual_tol:
        ap = avp(p)
        done += 1
        alpha = rr / p.dot(ap)
        x.add_(alpha * p)
        r.sub_(alpha * ap)
        rr_next = r.dot(r)
        p = r + (rr_next / rr) * p
        rr = rr_next
    return CGResult(x, done, rr)
