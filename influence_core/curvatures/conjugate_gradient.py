"""Conjugate gradients on the damped GGN (curvlinops' CGInverseLinearOperator): H⁻¹g without forming H."""

from __future__ import annotations

import math
import warnings

import torch

from influence_core.curvatures.base import Curvature, CurvatureRequest
from influence_core.curvatures.operators import SOLVE_COLUMNS, apply_in_chunks, damped_ggn, operator_bytes, solve_cost_blocks
from influence_core.knobs import Knob
from influence_core.text import plural
from influence_core.timing import Cost, gradient_rows, on_rows, product_model, remember, seconds_text

CG_MAX_ITER, CG_TOLERANCE = 200, 1e-6
# the iteration count of a solve is measured on one mini-batch's operator for at most this long (else: the cap)
CG_PROBE_SECONDS = 2.0  # the iterations sampled to see the spectrum (was 8 × a 0.25-s probe)


class ConjugateGradientCurvature(Curvature):
    name = "cg"
    label = "conjugate gradients on the GGN (curvlinops)"
    short_label = "CG"
    # not chosen by auto: it converges to what exact / kron already give, at one pass over the data per iteration
    knobs = {
        "max_iter": Knob("most CG iterations", CG_MAX_ITER, int, 1, 100_000),
        "tolerance": Knob("relative residual to stop at", CG_TOLERANCE, float, 0.0, 1.0),
    }

    def __init__(self, operator, inverse, param_names, max_iter: int, tolerance: float):
        self.param_names = list(param_names)
        self._operator, self._inverse = operator, inverse
        self.max_iter, self.tolerance = max_iter, tolerance
        self.report = ""

    @classmethod
    def estimate_bytes(cls, request: CurvatureRequest) -> int:
        return operator_bytes(request, vectors=6)

    @classmethod
    def hyperparameters(cls, request: CurvatureRequest) -> dict:
        """linear_cg's settings (curvlinops passes them on): the fit and the estimate's probe use the same."""
        max_iter, tolerance = cls.option(request, "max_iter", CG_MAX_ITER), cls.option(request, "tolerance", CG_TOLERANCE)
        return {"max_iter": max_iter, "max_tridiag_iter": 0, "tolerance": tolerance, "eps": 1e-14, "stop_updating_after": 1e-14}

    @classmethod
    def iterations(cls, request: CurvatureRequest) -> tuple[int, bool]:
        """(iterations a block of right-hand sides takes, whether measured): CG solving a few of the training rows' own
        gradients on one mini-batch's operator (the data's spectrum, sampled) as far as ``CG_PROBE_SECONDS`` allows.
        A probe that converges is counted; one that does not is extrapolated at the rate its relative residual fell
        over its second half, up to ``max_iter`` (a solve that stalls runs to it)."""
        settings = cls.hyperparameters(request)
        max_iter = settings["max_iter"]
        batch = max(1, min(request.batch_size, request.n_train))
        per_product = product_model(request, damped_ggn, 4)(4) * batch / request.n_train
        cap = min(max_iter, int(CG_PROBE_SECONDS / 1.5 / max(per_product, 1e-9)))
        if cap < 20:  # linear_cg takes at least 10 iterations: too few to learn a rate from
            return max_iter, False
        return remember(request, ("cg_iterations", cap), lambda: cls._probe(request, settings, batch, cap))

    @classmethod
    def _probe(cls, request: CurvatureRequest, settings: dict, batch: int, cap: int) -> tuple[int, bool]:
        from linear_operator.utils.linear_cg import linear_cg

        operator = damped_ggn(on_rows(request, batch))
        rhs = gradient_rows(request, 4).T.to(operator.device, operator.dtype)
        rhs = rhs / rhs.norm(dim=0, keepdim=True).clamp_min(1e-30)
        residuals = []
        for stop in (cap // 2, cap):
            products = [0]

            def matmul(v, products=products):
                products[0] += 1
                return operator @ v

            with warnings.catch_warnings():  # a probe stopped at its cap is no news to the user
                warnings.simplefilter("ignore")
                solution = linear_cg(matmul, rhs, **{**settings, "max_iter": stop})
            if products[0] - 1 < stop:  # converged before the cap (the first product is the initial residual's)
                return products[0] - 1, True
            residuals.append(float((operator @ solution - rhs).norm(dim=0).mean()))
        (r_half, r_cap), tolerance = residuals, settings["tolerance"]
        if not 0 < r_cap < r_half:  # stalled (float32 rounding) or diverging: it runs to the cap
            return settings["max_iter"], True
        rate = math.log(r_half / r_cap) / (cap - cap // 2)  # per iteration, over the second half
        more = math.log(max(r_cap, 1e-300) / tolerance) / rate
        return int(min(settings["max_iter"], cap + max(more, 0.0))), True

    @classmethod
    def estimate_cost(cls, request: CurvatureRequest) -> Cost:
        """Iterations × one GGN product per block of up to 256 right-hand sides (the rows to solve), timed here, plus
        the residual check after each call (64 rows)."""
        blocks = solve_cost_blocks(request)
        if not blocks:
            return Cost(0.0)
        product = product_model(request, damped_ggn, min(SOLVE_COLUMNS, request.rows_to_solve))
        iterations, counted = cls.iterations(request)
        sweep = sum(product(b) for b in blocks)
        calls = -(-request.rows_to_solve // 2048)  # self-influence solves chunk by chunk of the gradient stream
        check = calls * product(min(64, request.rows_to_solve))
        what = (
            f"CG: {iterations} iterations{'' if counted else ' (its cap)'} × {plural(len(blocks), 'block')} of up to "
            f"{SOLVE_COLUMNS} rows ({request.rows_to_solve:,} rows), {seconds_text(product(blocks[0]))} per product"
        )
        return Cost(iterations * sweep + check, what)

    @classmethod
    def fit(cls, request: CurvatureRequest) -> "ConjugateGradientCurvature":
        from curvlinops import CGInverseLinearOperator

        settings = cls.hyperparameters(request)
        operator = damped_ggn(request)
        inverse = CGInverseLinearOperator(operator, **settings)
        return cls(operator, inverse, request.param_names, settings["max_iter"], settings["tolerance"])

    def inverse_hvp(self, grads: torch.Tensor) -> torch.Tensor:
        solved = apply_in_chunks(self._inverse, grads)
        # one more product says how far CG got: the relative residual ‖(H + λI)x − g‖ / ‖g‖ of the worst row
        residual = apply_in_chunks(self._operator, solved[:64]) - grads[:64]
        worst = float((residual.norm(dim=1) / grads[:64].norm(dim=1).clamp_min(1e-30)).max()) if len(grads) else 0.0
        self.report = f"CG: relative residual {worst:.1e} (tolerance {self.tolerance:g}, at most {self.max_iter} iterations)"
        return solved
