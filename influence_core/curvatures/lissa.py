"""LiSSA (Agarwal et al. 2017) as a truncated Neumann series on the damped GGN (curvlinops'
NeumannInverseLinearOperator): H⁻¹ ≈ α Σ_{k<K} (I − αH)ᵏ, with α set from H's largest eigenvalue so it converges."""

from __future__ import annotations

import torch

from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.curvatures.operators import SOLVE_COLUMNS, apply_in_chunks, damped_ggn, operator_bytes, solve_cost_blocks
from influence_core.knobs import Knob
from influence_core.text import plural
from influence_core.timing import Cost, product_model, seconds_text

LISSA_DEPTH = 1000
POWER_ITERATIONS = 30


def largest_eigenvalue(operator, p: int, iterations: int = POWER_ITERATIONS, seed: int = 0) -> float:
    """Power iteration (seeded): the scale LiSSA needs, α < 2 / λ_max."""
    v = torch.randn(p, generator=torch.Generator().manual_seed(seed), dtype=operator.dtype).to(operator.device)
    v /= v.norm()
    value = 0.0
    for _ in range(iterations):
        w = operator @ v
        value = float(v @ w)
        v = w / w.norm().clamp_min(1e-30)
    return value


class LissaCurvature(Curvature):
    name = "lissa"
    label = "LiSSA / Neumann series on the GGN (curvlinops)"
    short_label = "LiSSA"
    knobs = {
        "depth": Knob("terms of the series", LISSA_DEPTH, int, 1, 100_000),
        "scale": Knob("α, below 2 / λ_max (at run time: 1 / (1.05 λ_max), by power iteration)", None, float, 0.0),
    }

    def __init__(self, operator, inverse, param_names, depth: int, scale: float, lambda_max: float, shift: float):
        self.param_names = list(param_names)
        self._operator, self._inverse = operator, inverse
        self.depth, self.scale = depth, scale
        # the slowest mode shrinks by (1 − α λ_min) per term: what is left after K terms
        self.report = (
            f"LiSSA: {depth} terms, scale α = {scale:.3g} (λ_max ≈ {lambda_max:.3g}); the smallest mode "
            f"keeps {(1 - scale * shift) ** depth:.1e} of its error"
        )

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        return operator_bytes(request, vectors=3)

    @classmethod
    def estimate_cost(cls, request: CurvatureRequest) -> Cost:
        """Power iteration (30 one-column GGN products) when the scale is not given, then the series: depth × one GGN
        product per block of up to 256 right-hand sides (the rows to solve), each timed here."""
        depth = cls.option(request, "depth", LISSA_DEPTH)
        blocks = solve_cost_blocks(request)
        product = product_model(request, damped_ggn, min(SOLVE_COLUMNS, max(request.rows_to_solve, 1)))
        power = 0.0 if request.options.get("scale") else POWER_ITERATIONS * product(1)
        series = depth * sum(product(b) for b in blocks)
        what = (
            f"LiSSA: {depth} terms × {plural(len(blocks), 'block')} of up to {SOLVE_COLUMNS} rows ({request.rows_to_solve:,} rows), "
            f"{seconds_text(product(blocks[0]) if blocks else 0.0)} per product"
        )
        return Cost(power + series, what)

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "LissaCurvature":
        from curvlinops import NeumannInverseLinearOperator

        depth, scale = cls.option(request, "depth", LISSA_DEPTH), request.options.get("scale")
        operator = damped_ggn(request)
        lambda_max = largest_eigenvalue(operator, request.profile.n_selected)
        scale = float(scale) if scale else 1.0 / (1.05 * lambda_max)  # inside (0, 2/λ_max): every mode contracts
        inverse = NeumannInverseLinearOperator(operator, num_terms=depth, scale=scale)
        return cls(operator, inverse, request.param_names, depth, scale, lambda_max, request.weight_decay + request.damping)

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        return apply_in_chunks(self._inverse, grads)
