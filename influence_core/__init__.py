"""Influence Lab core: datasets, models, training, per-sample gradients, curvature and influence.

Sign convention (the one place it is defined): an influence *score* of training sample z on
test sample z' is ``-∇L(z')ᵀ H⁻¹ ∇L(z)`` (Koh & Liang's I_up,loss). Positive = harmful:
removing z would lower the loss on z'. Negative = helpful. Removing z changes the test loss by
about ``-score / n_train``.
"""

__all__ = ["SIGN_CONVENTION"]

SIGN_CONVENTION = "positive = harmful (removing the sample would lower the test loss), negative = helpful"
