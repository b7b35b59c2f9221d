"""Influence signals for data glitches (Myrtakis et al., KDD'25): SI, MI, AAI, GD-class, CNCI, PCID, CFRank.

The influence matrix is TracIn from training to a clean validation set over the saved checkpoints
of plain SGD, on the final linear layer ``head`` (weights and, by default, bias):

    IM[i, j] = -Σ_k η_k ∇L(z_val_j; θ_k)ᵀ ∇L(z_tr_i; θ_k)          (n_train × n_val)

in the house sign convention: **positive = harmful** (a step on z_tr_i raises the loss of
z_val_j), negative = helpful. The paper writes the opposite sign (its "negative influence" is our
positive score); every formula below is the paper's, translated.

For a softmax classifier the per-sample gradient of the cross-entropy w.r.t. the head is in
closed form, ``(softmax − onehot(y)) ⊗ [a, 1]`` with ``a`` the head's input, so

    ∇L(z_val)ᵀ ∇L(z_tr) = (r_valᵀ r_tr) · (a_valᵀ a_tr + 1)

and a whole checkpoint's block is two small matmuls (``r`` = softmax − onehot, C columns;
``a`` = features, h columns) instead of per-sample gradients of C·(h+1) entries. Relabelling
training sample i to class c only changes ``r_tr`` to ``p_i − onehot(c)``, so counterfactual
influence for any candidate label is as cheap. ``include_bias=False`` drops the ``+ 1`` (the bias
gradient), i.e. influence over ``head.weight`` only.

Signals, one value per training row; **``scores`` are oriented so that higher = more suspicious**:

- SI, self-influence: Σ_k η_k ‖∇L(z_i; θ_k)‖².
- MI, marginal influence: Σ_j IM[i, j] (harmful in total = suspicious).
- AAI, average absolute influence: mean_j |IM[i, j]|.
- GD-class: the paper's min_c Σ_{j: y_j = c} I(z_i → z_j), i.e. max_c Σ_{j ∈ c} IM[i, j] here.
- CNCI (Algorithm 1): ncf_i = the class whose validation samples z_i harms most,
  argmax_c Σ_{j ∈ c} max(IM[i, j], 0); then z_i is relabelled to ncf_i and its influence
  recomputed at the final checkpoint θ_T, IM'; CNCI_i = -Σ_{j: y_j = ỹ_i} max(IM'[i, j], 0) ≤ 0
  (the paper's value: near 0 = mislabeled, large negative = clean). ``ncf`` is the repair label.
- PCID (Algorithm 2): u_i[c] = Σ_{j ∈ c} max(-IM[i, j], 0) (help per class), pcf_i =
  argmax_{c ≠ ỹ_i} u_i[c], u'_i the same with z_i relabelled to pcf_i at θ_T, w_i = Σ_c u_i[c];
  PCID_i = 1 / (w_i ‖u_i − u'_i‖_∞), the denominator floored at 1e-12 × its largest value so a
  zero never divides (such rows get the largest finite score).
- CFRank: max(r(CNCI_i), r(PCID_i)) with r the ascending rank (1 = smallest); the detected type is
  "mislabeled" when the CNCI rank is the larger, else "anomaly".

Every class-conditional aggregation runs over all classes 0..C-1 (a one-hot matmul with C
columns), so a class with no validation samples gives a zero column instead of shifting the others.

The pipeline :func:`detect_glitches` (used by the Glitch signals page and ``benchmarks/signals.py``)
loads a dataset, injects glitches (:mod:`influence_core.data.glitches`), carves the clean
validation set from the dataset's **test split** (a stratified, seeded ``val_fraction`` of it;
the rest stays the test set that measures accuracy), trains with SGD (no momentum) and
checkpoints, computes all signals and the baselines (cleanlab ``find_label_issues`` on
out-of-fold probabilities, scikit-learn ``IsolationForest``) and scores them against the truth.

One module per job: ``head`` (the closed-form influence matrix), ``compute`` (the signals), ``scoring`` (against the
truth), ``pipeline`` (:func:`detect_glitches`) and ``repairs`` (what the view shows and the retrain).
"""

from influence_core.signals.compute import (  # noqa: F401
    PCID_FLOOR,
    SIGNALS,
    CounterfactualFn,
    SignalResult,
    ascending_rank,
    cfrank,
    class_sums,
    compute_signals,
    compute_signals_by_method,
    pcid_from_denominator,
    signals_from_rows,
    uses_head_closed_form,
)
from influence_core.signals.head import (  # noqa: F401
    HeadTrace,
    counterfactual_rows,
    head_inputs,
    influence_rows,
    trace_head,
    tracin_self_influence,
    train_val_influence,
)
from influence_core.signals.pipeline import (  # noqa: F401
    GLITCH_DETECTORS,
    GlitchConfig,
    GlitchReport,
    default_signal,
    detect_glitches,
    signal_run_config,
    split_validation,
)
from influence_core.signals.repairs import (  # noqa: F401
    RepairOutcome,
    apply_repairs,
    default_repair_count,
    doubted_relabels,
    flagged_frame,
    retrain_with_repairs,
    suggested_repairs,
    thumbnail,
)
from influence_core.signals.scoring import (  # noqa: F401
    BASELINES,
    flagged_at_ratio,
    repair_accuracy,
    score_methods,
)

__all__ = [
    "BASELINES",
    "CounterfactualFn",
    "GLITCH_DETECTORS",
    "GlitchConfig",
    "GlitchReport",
    "HeadTrace",
    "PCID_FLOOR",
    "RepairOutcome",
    "SIGNALS",
    "SignalResult",
    "apply_repairs",
    "ascending_rank",
    "cfrank",
    "class_sums",
    "compute_signals",
    "compute_signals_by_method",
    "counterfactual_rows",
    "default_repair_count",
    "default_signal",
    "detect_glitches",
    "doubted_relabels",
    "flagged_at_ratio",
    "flagged_frame",
    "head_inputs",
    "influence_rows",
    "pcid_from_denominator",
    "repair_accuracy",
    "retrain_with_repairs",
    "score_methods",
    "signal_run_config",
    "signals_from_rows",
    "split_validation",
    "suggested_repairs",
    "thumbnail",
    "trace_head",
    "tracin_self_influence",
    "train_val_influence",
    "uses_head_closed_form",
]
