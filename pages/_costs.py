"""What work will cost, said before it starts: the estimate beside a choice, and a confirming click past
``timing.CONFIRM_SECONDS``."""

from __future__ import annotations

import hashlib
import logging
import traceback
from typing import Any, Callable, Optional

import streamlit as st

from influence_core.errors import CurvatureError, InputError
from influence_core.timing import Cost
from pages._results import memoised, run_or_explain

log = logging.getLogger("influence_lab")


_CONFIRMED = "_confirmed_starts"  # starts a person confirmed (confirm_start), by key
_ASKED = "_asked_starts"  # clicks waiting for their estimate or confirmation (gated_result), by key


def forget_confirmed_starts() -> None:
    """After a Stop: every long start is asked about again (a view came back to minutes of stopped work, restarted with
    no question, because its start had been confirmed once), and no click waits to start."""
    for key in (_CONFIRMED, _ASKED):
        st.session_state.get(key, set()).clear()


def cost_note(container: Any, cost: Optional[Cost], subject: str = "On this machine") -> None:
    """The estimate beside the choice it is for: '… about 4 min 03 s (CG: 200 iterations × …)'."""
    if cost is not None:
        container.caption(cost.line(f"{subject}:"))


def estimated(estimate: Callable[[], Any]) -> Optional[Any]:
    """An estimate, or None where it cannot be made: the work it is for then starts unestimated, and where the work
    itself is refused (a curvature past the memory budget) its own run says why, once."""
    try:
        return estimate()
    except (InputError, CurvatureError):
        return None
    except Exception:  # noqa: BLE001 — an estimate must not stand between the person and the work; the log keeps it
        log.warning("could not estimate the cost\n%s", traceback.format_exc())
        return None


def confirm_start(cost: Optional[Cost], key: str, action: str) -> bool:
    """Whether work estimated at ``cost`` may start: at once when it is under ``timing.CONFIRM_SECONDS`` (or not
    estimated), else once the person clicks the button that states the estimate (remembered for ``key`` in this
    session). Until then the page shows the estimate and that button; the caller stops the run."""
    confirmed = st.session_state.setdefault(_CONFIRMED, set())
    if cost is None or not cost.needs_confirmation or key in confirmed:
        return True
    st.info(f"{action} is estimated at {cost.text()} on this machine" + (f" ({cost.what})" if cost.what else "") + ".")
    if st.button(f"{action}: {cost.text()}", key="confirm_" + hashlib.sha256(key.encode()).hexdigest()[:16], type="primary"):
        confirmed.add(key)
        return True
    return False


def gated_result(
    clicked: bool, store_key: str, action: str, estimate: Callable[[], Optional[Cost]], compute: Callable[[Optional[Cost]], Any]
) -> Optional[Any]:
    """:func:`kept_result` with the cost said first: a click has the work estimated (``estimate``, measured on this
    machine, kept for the session) and starts it at once when it is under ``timing.CONFIRM_SECONDS``, else after a
    second click on a button that states the estimate; ``compute(cost)`` shows it in its progress box."""
    asked = st.session_state.setdefault(_ASKED, set())
    if clicked:
        asked.add(store_key)
    if store_key in asked:
        cost = memoised(f"cost:{store_key}", lambda: estimated(estimate))
        if confirm_start(cost, store_key, action):
            asked.discard(store_key)
            value = run_or_explain(compute, cost)
            if value is not None:
                st.session_state[store_key] = value
    return st.session_state.get(store_key)
