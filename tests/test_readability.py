"""What a new user's browser walk found hard to read (the readability branch): counts and waits in words, headers
and titles shown whole, messages that say what to fix, legends and galleries that say what they show."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


# ------------------------------------------------------------------ counts and waits in words


def test_counts_take_their_plural_and_short_waits_read_under_a_second():
    """'relabel 1 rows' and 'Run them (about 0 s)': one helper writes a count with its noun, one an estimated wait."""
    from influence_core.text import plural
    from influence_core.timing import Cost, estimate_text

    assert plural(1, "row") == "1 row" and plural(0, "row") == "0 rows" and plural(1257, "row") == "1,257 rows"
    assert plural(2, "retraining") == "2 retrainings" and plural(2, "class", "classes") == "2 classes"
    assert estimate_text(0.3) == "under a second" and estimate_text(0.0) == "under a second"
    assert estimate_text(26.2) == "about 27 s" and estimate_text(65) == "about 1 min 05 s"
    assert Cost(0.4).text() == estimate_text(0.4)


def test_glitch_repairs_write_one_row_in_the_singular():
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.switch_page("pages/glitch_signals.py").run()
    assert not at.exception, at.exception
    repair = next(n for n in at.number_input if n.key and n.key.startswith("glitch_n_repair"))
    repair.set_value(1).run()
    assert not at.exception, at.exception
    suggested = [m.value for m in at.markdown if m.value.startswith("Suggested:")]
    assert suggested and "relabel 1 row," in suggested[0] and "1 rows" not in suggested[0], suggested
