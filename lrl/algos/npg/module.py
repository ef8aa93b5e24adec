"""Natural Policy Gradient (Kakade 2002; Rossi ch. 6, Alg. 6.1; Fragkiadaki Alg. 1; Yin §4.5).

One natural-gradient step per rollout, θ ← θ + sqrt(2ε / gᵀF⁻¹g)·F⁻¹g, with F⁻¹g by conjugate gradient on
Fisher-vector products of the mean KL. That is TRPO's step before its backtracking line search (Fragkiadaki: "TRPO =
NPG + line search"), so NPG is :class:`lrl.algos.trpo.module.TRPO` with ``line_search`` off by default; the
update, the value fit and every option are described there.
"""

from __future__ import annotations

from typing import ClassVar

from lrl.algos.trpo.module import TRPO


class NPG(TRPO):
    """Natural Policy Gradient (Rossi Alg. 6.1, Fragkiadaki Alg. 1): the trust-region step without TRPO's line
    search, θ ← θ + sqrt(2ε / gᵀF⁻¹g)·F⁻¹g. The same class as :class:`TRPO`; only ``line_search``'s default
    differs (Fragkiadaki: "TRPO = NPG + line search")."""

    line_search_default: ClassVar[bool] = False
