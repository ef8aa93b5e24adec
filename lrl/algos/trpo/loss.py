"""The trust-region step of NPG and TRPO as functions of explicit tensors (Rossi ch. 6–7, Fragkiadaki).

The update maximises the importance-sampled surrogate under a mean-KL constraint (Rossi eq. 7.41):

    maximise L(θ') = E[π_θ'(a|s) / π_θ(a|s) · Â]   s.t.   E_s[KL(π_θ(·|s) ‖ π_θ'(·|s))] ≤ δ

Linearising L and taking the quadratic KL ½ΔᵀFΔ gives the natural-gradient problem, solved by
Δ = sqrt(2δ / xᵀFx) · x with x = F⁻¹g (Rossi eq. 6.12, 7.46–7.51). NPG takes Δ; TRPO searches b^j·Δ
backwards until the real KL and surrogate on the samples pass (Rossi Alg. 7.1, Fragkiadaki Alg. 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


def natural_step_scale(x: torch.Tensor, fx: torch.Tensor, max_kl: float) -> torch.Tensor:
    """η = sqrt(2δ / xᵀFx), so that the quadratic KL of η·x is exactly ½(ηx)ᵀF(ηx) = δ (Rossi eq. 7.50).

    Equal to sqrt(2δ / gᵀF⁻¹g) of eq. 6.7 when x = F⁻¹g exactly; written with x so that an inexact CG solution
    still meets the quadratic constraint. A non-positive curvature (no damping, numerically singular F) gives a
    zero step rather than NaN.
    """
    curvature = x.dot(fx)
    return torch.sqrt(2.0 * max_kl / curvature) if curvature > 0 else torch.zeros((), dtype=x.dtype,
                                                                                 device=x.device)


class LineSearch(NamedTuple):
    accepted: bool
    fraction: float  # b^j of the accepted step; 0.0 when rejected
    backtracks: int  # j of the accepted step; number of evaluations − 1 when rejected
    kl: float  # mean KL(old ‖ new) at the accepted step (0.0 when rejected: θ is unchanged)
    surrogate: float  # surrogate at the accepted step (the old one when rejected)


def backtracking_line_search(evaluate: Callable[[float], tuple[float, float]], *, old_surrogate: float,
                             max_kl: float, backtrack_coef: float = 0.8, max_backtracks: int = 10) -> LineSearch:
    """Try θ_old + b^j·Δ for j = 0 … U and accept the first with mean KL ≤ δ and a surrogate that improved
    (Rossi Alg. 7.1, Fragkiadaki Alg. 2 with α^j); when none passes, reject: the caller restores θ_old.

    ``evaluate(fraction)`` puts the parameters at θ_old + fraction·Δ and returns (mean KL(old ‖ new), surrogate)
    on the samples. "Improved" is strict (the brief's "the surrogate improved"; Rossi §7.9 says "greater or
    equal", Fragkiadaki "L ≥ 0": a step that changes nothing is not worth taking).
    """
    if not 0.0 < backtrack_coef < 1.0:
        raise ValueError(f"backtrack_coef must be in (0, 1), got {backtrack_coef}")
    fraction = 1.0
    for j in range(max_backtracks + 1):
        kl, surr = evaluate(fraction)
        if kl <= max_kl and surr > old_surrogate:
            return LineSearch(True, fraction, j, kl, surr)
        fraction *= backtrack_coef
    return LineSearch(False, 0.0, max_backtracks, 0.0, old_surrogate)
