"""Flip sets: the smallest set of training points whose relabeling flips one test prediction.

Algorithm 1 of "Relabel minimal training subset to flip a prediction" (Yang & Yu), built on the
influence of relabeling (Warnecke et al.) and the removal variant of Yang et al. (2023).

Choices (documented once, here):

- **f(x)** is, as in the paper, the predicted probability p(class 1 | x) with threshold τ
  (``output="probability"``, the default): Δp = p(1 − p)·Δm with m(x) = z₁(x) − z₀(x) the logit
  margin. ``output="margin"`` sums Δm against logit(τ) instead. Both rank training points the
  same way; the probability form is the more conservative one (one Newton step overestimates
  the effect of relabeling a confidently fitted point, and p(1 − p) damps confident test points),
  and on breast cancer it is the one whose flips retraining confirms (53–68% for λ = 0.01–1, vs ≈13%
  for margins; digits 3-vs-8 and MNIST 4-vs-9: 100%). ``refine_flip_set`` grows an unconfirmed set
  by retraining and re-running Algorithm 1 (Yang et al. 2023's iterative idea).
- **Relabeling** training point i (binary: y → 1 − y) changes the objective by
  (1/N)(L(x_i, y') − L(x_i, y)), so to first order Δθ = −(1/N) H⁻¹ (∇L(x_i, y') − ∇L(x_i, y)).
  (The paper writes the formula without the minus sign; the sign here is the one that agrees
  with retraining, which the tests check.) For any softmax model
  ∇L(x, y') − ∇L(x, y) = (2y − 1) ∇m(x), hence
  Δm_t,i = −(1/N)(2y_i − 1) ∇m(x_t)ᵀ H⁻¹ ∇m(x_i).
- **Removal** of point i: Δθ = +(1/N) H⁻¹ ∇L(x_i, y_i), and ∇L(x_i, y_i) = −(2y_i − 1)(1 − p(y_i|x_i)) ∇m(x_i),
  so the removal effect is the relabel effect scaled by 1 − p(y_i|x_i) ∈ (0, 1).
- **H** is the Hessian of the training objective mean CE + (λ/2)‖θ‖² over *all* parameters,
  the intercept included: the engine's logistic regression (a 2-class softmax linear layer)
  regularises its bias in the fit too, so fit and Hessian are consistent. For logistic
  regression the fit is polished to the optimum in float64 and H is exact; neural models use
  the configured curvature backend (exact / diag / kron / last_layer) at the trained weights.
- **Verification** relabels (or removes) the set on a *copy* of the labels, never in place.
  Logistic regression is refitted with L-BFGS warm-started at the fitted weights (the objective
  is strictly convex, so this reaches the same optimum as a cold start, much faster); neural
  models are retrained from the same seed with ``train_model``.

One module per job: ``data`` (the sets and their noise and bias), ``search`` (Algorithm 1), ``pipeline`` (the fitted
model and every test point's sets), ``verification`` (retraining and growing a set) and ``analyses`` (the paper's
studies).
"""

from influence_core.flipset.analyses import (  # noqa: F401
    BiasExplanation,
    NoiseSweep,
    bias_explanation,
    k_summary,
    noise_sweep,
    two_group_comparison,
)
from influence_core.flipset.data import (  # noqa: F401
    WHAT_IF_DATASETS,
    BiasedData,
    add_label_noise,
    breast_cancer_dataset,
    flatten_features,
    inject_group_bias,
    project_2d,
    what_if_config,
    what_if_data,
    what_if_dataset,
)
from influence_core.flipset.pipeline import (  # noqa: F401
    FittedBinary,
    FlipSetResult,
    compute_flip_sets,
    fit_binary,
    is_linear,
    margin_kernel,
)
from influence_core.flipset.search import (  # noqa: F401
    MODES,
    OUTPUTS,
    FlipSearch,
    check_binary,
    effects_from_kernel,
    find_flip_sets,
    logit_margin,
)
from influence_core.flipset.verification import (  # noqa: F401
    REFINEMENT_ROUNDS,
    RefinedFlip,
    Verification,
    edited_labels,
    refine_flip_set,
    refinement_cost,
    retrained_margins,
    verification_cost,
    verify_flip_sets,
)

__all__ = [
    "is_linear",
    "check_binary",
    "BiasExplanation",
    "BiasedData",
    "FittedBinary",
    "FlipSearch",
    "FlipSetResult",
    "MODES",
    "NoiseSweep",
    "OUTPUTS",
    "REFINEMENT_ROUNDS",
    "RefinedFlip",
    "Verification",
    "WHAT_IF_DATASETS",
    "add_label_noise",
    "bias_explanation",
    "breast_cancer_dataset",
    "compute_flip_sets",
    "edited_labels",
    "effects_from_kernel",
    "find_flip_sets",
    "fit_binary",
    "flatten_features",
    "inject_group_bias",
    "k_summary",
    "logit_margin",
    "margin_kernel",
    "noise_sweep",
    "project_2d",
    "refine_flip_set",
    "refinement_cost",
    "retrained_margins",
    "two_group_comparison",
    "verification_cost",
    "verify_flip_sets",
    "what_if_config",
    "what_if_data",
    "what_if_dataset",
]
