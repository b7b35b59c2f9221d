"""The explorer's checks of one point's influence against retraining: the predicted removal, the retraining check,
exact attribution with fixed randomness, and the edit-and-retrain. Split from pages/explorer.py, which lays out the
view and hands the run over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from influence_core.experiments import EDITS, decision_grid, retrain_with_edit
from influence_core.figures import decision_region_figure, number_format, retraining_check_figure
from influence_core.figures.what_if import removal_check_figure
from influence_core.methods import method_label, method_short_label, names_where
from influence_core.metrics import accuracy_change
from influence_core.retraining_check import (
    check_by_retraining,
    check_with_fixed_randomness,
    predicted_loss_change_on_removal,
    retraining_check_cost,
    strongest_for_test_point,
)
from influence_core.text import plural
from influence_core.timing import Cost, estimate_text, seconds_text
from pages._costs import gated_result
from pages._progress import progress_status
from pages._results import one_thread
from pages._widgets import settle_widget

NOT_RETRAINED = (
    "Your model is not retrained here. To check it, choose the MLP or logistic regression, which this page retrains; "
    "or retrain yours on the exported points without the ones you pick, and compare."
)

# the two retrainings give different numbers for the same removal (a walk read -3.2e-3 in one, -0.0080 in the
# other, unexplained): each says how it retrains and why the other differs
RETRAINING_WAYS = {
    "check": "This check re-optimises from the trained weights without the point (L-BFGS in float64): the removal's own "
    "effect, which influence predicts. 'Remove or relabel … and retrain' retrains from scratch with the run's own "
    "optimiser, so its change also holds where that training ends: the two differ for the same removal.",
    "edit": "Its loss change differs from the retraining check's for the same removal: the check re-optimises from "
    "the trained weights and measures the removal alone; this run also moves where training ends.",
}


@dataclass
class RetrainingChecks:
    """The explorer's run (``result``: experiments.InfluenceResult, its ``config`` and influence ``method``), and
    whether the model is the person's own (``yours``: not retrained here)."""

    result: Any
    config: Any
    method: str
    yours: bool

    @property
    def ds(self):
        return self.result.dataset

    @property
    def metrics(self) -> dict:
        return self.result.metrics

    def for_point(self, view: str, idx: int) -> None:
        """What the view shows under the plot for the chosen point."""
        if view == "train":
            self._removal_prediction(idx)
        if view != "self":
            self._retraining_checks(view, idx)
        if view == "train" and not self.yours:  # yours: the check says why nothing retrains it
            self._edit_and_retrain(idx)

    def _removal_prediction(self, idx: int) -> None:
        """The first-order change of the mean test loss if training point ``idx`` were removed."""
        change = float(predicted_loss_change_on_removal(self.result.pairwise[:, idx], len(self.ds.y_train)).mean())
        if abs(change) < 1e-12:  # a point fitted with ~zero loss gradient moves nothing
            st.write(f"Removing training point #{idx} would leave the mean test loss unchanged (its loss gradient is ~0).")
        else:
            st.write(
                f"Removing training point #{idx} would change the mean test loss by about **{change:+.2e}** "
                f"({'harmful' if change < 0 else 'helpful'} on average)."
            )

    def _show_check(self, train_indices, test_indices, store_key: str, button: str) -> None:
        """A button that retrains without the named points and plots predicted vs retrained loss changes."""

        def _estimate():
            with one_thread():
                return retraining_check_cost(self.result, len(train_indices))

        def _check(cost):
            with one_thread(), progress_status("Retraining", cost) as report:
                return check_by_retraining(self.result, train_indices, test_indices, progress=report)

        check = gated_result(st.button(button, key="explorer_check_button"), store_key, "Retraining", _estimate, _check)
        if check is None:
            return
        n_pairs = int(np.isfinite(check.actual).sum())
        # what each dot is: one removal seen at many test points, many removals at one, or both
        dots = "test points" if len(train_indices) == 1 else "removals" if len(test_indices) == 1 else "(removal, test point) pairs"
        if not check.can_tell:
            st.warning(
                f"**The check cannot tell here.** Retraining with nothing removed moves the test loss by up to "
                f"{check.noise_floor:.1e} (the noise floor); {n_pairs - check.n_above_noise} of {n_pairs} predicted or "
                f"retrained changes are that small (the largest predicted: {np.abs(check.predicted).max():.1e}). "
                "A correlation over them would measure the optimiser, not the influence. Check a point that pulls "
                "harder: the flipped one, or one near the boundary (the largest points above)."
            )
            st.plotly_chart(retraining_check_figure(check), width="stretch", key="explorer_check_plot")
            return
        st.caption(
            f"Over the {check.n_above_noise} of {n_pairs} {dots} above the retraining noise floor "
            f"(±{check.noise_floor:.1e}: retraining with nothing removed); the grey band marks the floor. " + RETRAINING_WAYS["check"]
        )
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Pearson", f"{check.pearson:.3f}", help="of predicted and retrained loss changes, over the dots")
        c2.metric("Spearman", f"{check.spearman:.3f}", help="rank agreement: does the score order the removals right?")
        c3.metric(
            "Same sign", f"{check.sign_agreement:.0%}", help=f"{dots} whose predicted and retrained changes agree in sign (a coin: 50%)"
        )
        c4.metric(
            "Slope, retrained on predicted",
            f"{check.slope:.2f}" if check.on_loss_scale else "—",
            help="the least-squares line through 0 of the retrained changes on the predicted ones (not a ratio of means): 1 = the "
            "right size; > 1 = influence understates the change",
        )
        if not check.signs_beyond_chance:
            st.caption(
                f"Same sign {check.sign_agreement:.0%} over {check.n_above_noise} {dots} is within two standard errors of a coin's "
                "50%: here the scores do not tell which way a removal moves this loss."
            )
        if not check.settled:
            st.warning(
                f"L-BFGS stopped short of an optimum: a gradient of {check.leftover_gradient:.1e} was left, "
                f"{check.leftover_gradient / check.removal_push:.0f}× the push of one removal ({check.removal_push:.1e}). "
                "Part of each retrained change is where the optimiser stopped, not the removal. ReLU kinks do this; "
                "a tanh or sigmoid MLP (Model details) or logistic regression settles."
            )
        if check.actual.shape[1] > 1:
            st.write(
                f"Mean test-loss change: predicted **{check.predicted.mean():+.2e}**, after retraining **{np.nanmean(check.actual):+.2e}**."
            )
        st.plotly_chart(retraining_check_figure(check), width="stretch", key="explorer_check_plot")
        if not check.on_loss_scale:
            st.caption(
                f"{method_label(self.method)} does not predict the size of a loss change (it declares no loss scale), so read the ranking and the signs."
            )

    def _show_exact_check(self, train_indices, test_index: int) -> None:
        """The same removals, asked of this very run: exact attribution and the chosen self.method against retraining with
        the point's weight zeroed (same initial weights, same batches)."""
        st.markdown("**This run without each point** (fixed randomness: the same initial weights and batches)")
        exact = names_where("exact_for_the_run")[0]
        compared = list(dict.fromkeys([exact, self.method]))
        seconds = len(train_indices) * float(self.result.metrics.get("train_seconds", 0.0))
        st.caption(
            f"Exact attribution differentiates through the recorded training run; the retrains are that run with one weight "
            f"zeroed. {estimate_text(seconds).capitalize()} of retraining ({plural(len(train_indices), 'run')} of {seconds_text(self.result.metrics.get('train_seconds', 0.0))}) "
            "plus one reverse pass through training."
        )

        def _exact(cost):
            with one_thread(), progress_status("Exact attribution and fixed-randomness retrains", cost) as report:
                return check_with_fixed_randomness(self.result, train_indices, [test_index], compared, progress=report)

        retrains = Cost(seconds, f"{len(train_indices)} retrains of this run's {self.result.metrics.get('train_seconds', 0.0):.1f} s")
        check = gated_result(
            st.button(f"Compare with exact attribution ({len(train_indices)} retrains, {retrains.text()})", key="explorer_exact_button"),
            f"explorer_exact:{self.config.key()}:test{test_index}:{len(train_indices)}",
            "Exact attribution and the retrains",
            lambda: retrains,
            _exact,
        )
        if check is None:
            return
        columns = st.columns(len(compared))
        for column, name in zip(columns, compared):
            column.metric(
                f"{method_short_label(name)}: Pearson", f"{check.pearson(name):.3f}", help=f"{check.method_seconds[name]:.1f} s to score"
            )
        st.plotly_chart(
            removal_check_figure(
                check.actual[:, 0],
                {method_short_label(m): check.predicted[m][:, 0] for m in compared},
                {method_short_label(m): check.on_loss_scale[m] for m in compared},
            ),
            width="stretch",
            key="explorer_exact_plot",
        )
        if check.pearson(exact) < 0.9:
            st.caption(
                "Exact attribution is exact for small weight changes; removing a whole point is a large one where training "
                "is not smooth in the weights (ReLU, Adam at a constant rate). A smooth activation, a decaying learning "
                "rate and more weight decay make the run smooth, and the prediction follows."
            )

    def _retraining_checks(self, view: str, idx: int) -> None:
        """Is the influence right here? The removals retrained (and, for a test point, the same run with exact attribution)."""
        if self.yours:
            with st.expander("Is the influence right here? Check against retraining"):
                st.info(NOT_RETRAINED)
        else:
            with st.expander("Is the influence right here? Check against retraining"):
                st.caption(
                    "Removes training points one at a time and retrains (full-batch L-BFGS from the trained weights: exact "
                    "leave-one-out for logistic regression, the nearest optimum for an MLP), then compares the test-loss "
                    "change with the one the scores predict (−score / N). Try other curvatures and damping: the dots move."
                )
                if view == "test" and np.abs(self.result.pairwise[idx]).max() < 1e-12:
                    st.write(
                        f"Test point #{idx} is fitted with ~zero loss gradient: no removal is predicted to move its loss. "
                        "Pick a point near the boundary or a misclassified one."
                    )
                elif view == "test":
                    settle_widget("explorer_check_n", 20, bounds=(5, 50))
                    n_check = st.slider(
                        "Strongest training points to remove, one at a time", 5, 50, step=5, key="explorer_check_n", persist_state="session"
                    )
                    top = strongest_for_test_point(self.result.pairwise, idx, n_check)
                    self._show_check(
                        top, [idx], f"explorer_check:{self.config.key()}:test{idx}:{n_check}", f"Retrain without each of the {n_check}"
                    )
                    self._show_exact_check(top, idx)
                else:
                    self._show_check(
                        [idx],
                        np.arange(len(self.ds.y_test)),
                        f"explorer_check:{self.config.key()}:train{idx}",
                        f"Retrain without training point #{idx}",
                    )

    def _edit_and_retrain(self, idx: int) -> None:
        """Remove or relabel one training point and retrain the same run: the change the influence predicted."""
        with st.expander(f"Remove or relabel training point #{idx} and retrain"):
            st.caption(
                "Retrains the same model from the same seed, from scratch, without the point or with its label changed "
                "to the likeliest other class, and redraws the regions. The influence above predicted the change; "
                "this is the change. " + RETRAINING_WAYS["edit"]
            )
            settle_widget("explorer_edit", EDITS[0], EDITS)
            edit = st.radio(
                "Edit",
                EDITS,
                horizontal=True,
                key="explorer_edit",
                persist_state="session",
                format_func={"remove": "remove it", "relabel": "change its label"}.get,
            )

            def _retrain(cost):
                with one_thread(), progress_status("Retraining with the edit", cost) as report:
                    return retrain_with_edit(self.result, idx, edit, report)

            # the same run again on edited data: its own training and scoring, as timed when it ran
            again = Cost(self.metrics["train_seconds"] + self.metrics["influence_seconds"], "this run's training and scoring, as timed")
            edited = gated_result(
                st.button(f"Retrain with this edit ({again.text()})", key="explorer_edit_button"),
                f"explorer_edit:{self.config.key()}:{idx}:{edit}",
                "Retraining with the edit",
                lambda: again,
                _retrain,
            )
            if edited is not None:
                after, edited_ds = edited
                before_test, after_test = self.metrics["test"], after.metrics["test"]
                loss_spec = number_format([after_test["loss"], after_test["loss"] - before_test["loss"]])  # one format for both
                e1, e2, e3 = st.columns(3)
                delta, measured = accuracy_change(before_test["accuracy"], after_test["accuracy"], len(self.ds.y_test))
                e1.metric(
                    "Test accuracy after",
                    f"{after_test['accuracy']:.1%}",
                    delta,
                    delta_color="normal" if measured else "off",
                    help="two binomial standard errors of the test accuracy: a change within them is not a measured one",
                )
                e2.metric(
                    "Mean test loss after",
                    f"{after_test['loss']:{loss_spec}}",
                    f"{after_test['loss'] - before_test['loss']:+{loss_spec}}",
                    delta_color="inverse",
                    help="the removal's first-order prediction is in the text above",
                )
                e3.metric(
                    "Flipped labels left",
                    int(edited_ds.flipped.sum()),
                    int(edited_ds.flipped.sum() - self.ds.flipped.sum()),
                    delta_color="inverse",
                )
                xs_after, ys_after, probs_after = decision_grid(after.model, np.r_[self.ds.x_train, self.ds.x_test])
                st.plotly_chart(
                    decision_region_figure(
                        xs_after,
                        ys_after,
                        probs_after,
                        edited_ds.x_train,
                        edited_ds.y_train,
                        after.self_scores,
                        edited_ds.flipped,
                        "self-influence after the edit",
                        class_names=self.ds.class_names,
                        highlight=("train", idx) if edit == "relabel" else None,
                        removed=self.ds.x_train[idx] if edit == "remove" else None,
                        height=480,
                    ),
                    width="stretch",
                    key="explorer_edit_plot",
                )
