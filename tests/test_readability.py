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


# ------------------------------------------------------------------ seconds in words, never 2.73e+1


def test_measured_seconds_read_in_their_own_unit():
    """Trust's table wrote 2.73e+1, 4.65e+2 and 6.83e-1 seconds (one scientific format for the column)."""
    from influence_core.timing import seconds_text
    from pages._progress import compute_seconds_text

    assert [seconds_text(s) for s in (1.2e-4, 0.243, 3.96, 27.3, 465.0, 4000.0)] == [
        "0.12 ms",
        "243 ms",
        "3.96 s",
        "27 s",
        "7 min 45 s",
        "1 h 06 min",
    ]
    assert compute_seconds_text(42.4) == "42 s" and compute_seconds_text(75.0) == "1 min 15 s"


def test_trust_table_writes_each_methods_time_in_words():
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/trust.py").run()
    at.multiselect(key="trust_methods").set_value(["influence@exact", "ip"])
    at.slider(key="trust_subsets").set_value(5)
    at.button(key="trust_go").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    table = at.dataframe[0].value
    assert "seconds" not in table.columns, list(table.columns)
    times = list(table["time"])
    assert all(isinstance(t, str) and t.endswith((" s", " ms", " min")) and "e+" not in t and "e-" not in t for t in times), times
    caption = next(c.value for c in at.caption if "subsets of" in c.value)
    assert "e+" not in caption, caption


# ------------------------------------------------------------------ a refused model file: the whole reason and the fix


def test_a_refused_model_file_says_why_in_full_and_what_to_fix(tmp_path):
    """A file that is no PyTorch file showed torch's paragraph about PyTorch 2.6's defaults, cut at 160 characters
    mid-word ("Re-running `torch.); ..."); one whose tensors fit no architecture named no fix."""
    import torch

    garbage, whole, empty, other = (tmp_path / n for n in ("garbage.pt", "whole.pt", "empty.pt", "junk.pt"))
    garbage.write_bytes(b"not a torch file")
    torch.save(torch.nn.Linear(2, 2), whole)
    empty.write_bytes(b"")
    torch.save({"w": torch.zeros(3)}, other)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.selectbox(key="explorer_model").set_value("file").run()
    said = {}
    for path in (garbage, whole, empty, other):
        at.text_input(key="explorer_model_file").set_value(str(path)).run()
        assert not at.exception, at.exception
        said[path.name] = [e.value for e in at.error]
    for name, errors in said.items():
        assert len(errors) == 1 and str(tmp_path / name) in errors[0], (name, errors)
        message = errors[0]
        assert "torch." in message or "architecture" in message, message
        assert "PyTorch 2.6" not in message and "`torch.)" not in message and "Re-running" not in message, message
        assert not message.rstrip().endswith((":", ",", "(")), message
    assert "not a weights file that torch.save wrote" in said["garbage.pt"][0] and "model.state_dict()" in said["garbage.pt"][0]
    assert "run code, which is never done" in said["whole.pt"][0] and "Linear" in said["whole.pt"][0]
    assert "empty" in said["empty.pt"][0]
    assert "pick the architecture" in said["junk.pt"][0], said["junk.pt"]


# ------------------------------------------------------------------ a file where a folder goes: name both


def test_a_file_where_a_data_folder_goes_says_what_was_given_and_what_is_expected(tmp_path):
    """A CSV path in Region cuts' ACAS Xu folder said 'ACAS Xu folder not found', as if the path did not exist."""
    from influence_core.data.acas import acasxu_networks
    from influence_core.data.chexpert import load_chexpert
    from influence_core.errors import InputError

    table, network, labels = tmp_path / "wine.csv", tmp_path / "ACASXU_run2a_1_1_batch_2000.nnet", tmp_path / "train.csv"
    for f in (table, network, labels):
        f.write_text("a,b\n1,2\n")
    said = {}
    for path in (table, network):
        try:
            acasxu_networks(path)
        except InputError as err:
            said[path.name] = str(err)
    try:
        load_chexpert(labels)
    except InputError as err:
        said["chexpert"] = str(err)
    assert "not found" not in said["wine.csv"] and "is a CSV file, not a folder" in said["wine.csv"], said
    assert "give the folder of the 45 ACAS Xu networks" in said["wine.csv"] and "Your CSV file" in said["wine.csv"]
    assert f"give the folder that holds it and the other ACAS Xu networks ({tmp_path})" in said[network.name], said
    assert "is a file, not the CheXpert folder: give the folder that holds it" in said["chexpert"], said

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/region_cuts.py").run()
    at.selectbox(key="rc_family").set_value("acasxu").run()
    at.text_input(key="rc_folder").set_value(str(table)).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(str(table) in e and "is a CSV file, not a folder" in e for e in errors), errors


# ------------------------------------------------------------------ the gallery says how many of the top it shows


def _gallery(at: AppTest) -> list[str]:
    return [i.caption for image in at.get("image") for i in image.proto.imgs if i.caption.startswith("#")]


def test_the_glitch_gallery_says_how_many_of_the_top_rows_it_shows():
    """'Show the top 20' above a gallery of 12 images, with nothing to say the gallery stops at 12."""
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.switch_page("pages/glitch_signals.py").run()
    assert not at.exception, at.exception
    assert at.slider(key="glitch_top").value == 20 and len(_gallery(at)) == 12
    said = [c.value for c in at.caption if "as images" in c.value]
    assert said == ["The top 12 rows as images (the gallery stops at 12; the table above lists all 20)."], said
    at.slider(key="glitch_top").set_value(5).run()
    assert not at.exception, at.exception
    assert len(_gallery(at)) == 5 and [c.value for c in at.caption if "as images" in c.value] == ["The top 5 rows as images."]


# ------------------------------------------------------------------ the explorer's legend names what sizes the points


def test_the_explorer_legend_names_what_sizes_the_points_in_every_view():
    """With points sized by one point's influence the legend still read only 'train (size = |self-influence|)' and
    'test', while the test points grew with the chosen training point's influence."""
    import json

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    legends, chosen = {}, {}
    for view in ("self", "test", "train"):
        at.radio(key="explorer_view").set_value(view).run()
        assert not at.exception, at.exception
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        legends[view] = [d.get("name") for d in spec["data"] if d.get("name")]
        if view != "self":
            chosen[view] = int(at.number_input(key=f"explorer_{view}_id").value)
    sized = {view: [n for n in names if "size = " in n] for view, names in legends.items()}
    assert sized["self"] == ["train (size = |self-influence|)"], legends["self"]
    test_id, train_id = chosen["test"], chosen["train"]
    assert sized["test"] == [f"train (size = |influence on test #{test_id}|)"], legends["test"]
    assert sized["train"] == ["train (size = |self-influence|)", f"test (size = |influence of train #{train_id}|)"], legends["train"]


# ------------------------------------------------------------------ tables that fit a 1440-px window, headers whole


def _table_widths(frame) -> dict[str, tuple[str, int]]:
    """{column: (header shown, configured width)} of an AppTest dataframe."""
    import json

    config = json.loads(frame.proto.columns) if frame.proto.columns else {}
    return {c: ((config.get(c) or {}).get("label") or c, (config.get(c) or {}).get("width")) for c in frame.value.columns}


def test_column_widths_fit_the_room_and_never_cut_a_header():
    import pandas as pd

    from influence_core.figures import TABLE_PX, column_widths

    table = pd.DataFrame(
        {
            "method": ["cleanlab (own threshold)", "cleanlab (logistic regression, out of the box)"],
            "family": ["baseline", "label-noise detector"],
            "repair accuracy (detected)": [0.5, 1.0],
            "notes": ["x" * 80, "y"],
        }
    )
    loose = column_widths(table, {"repair accuracy (detected)": ".1f"})
    assert sum(loose.values()) > 700
    short = {"repair accuracy (detected)": "repair (flagged)"}
    fitted = column_widths(table, {"repair accuracy (detected)": ".1f"}, labels=short, total=500, least={"method": 24})
    assert sum(fitted.values()) <= 500, fitted
    for column, width in fitted.items():
        assert width >= 28 + 7 * len(short.get(column, column)), (column, width)  # the header whole
    assert fitted["method"] >= 28 + 7 * 24  # "cleanlab (own threshold)" whole
    assert fitted["notes"] < loose["notes"]  # the longest cells give way first
    assert column_widths(table, total=10_000) == column_widths(table) and TABLE_PX < 980


def test_glitch_tables_fit_a_1440_px_window_with_every_header_whole():
    """'repair accuracy (detected)' and 'shares of the default's top 12' were cut at the window's edge."""
    from influence_core.figures import TABLE_IN_BOX_PX, TABLE_PX

    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.switch_page("pages/glitch_signals.py").run()
    assert not at.exception, at.exception
    tables = {d.proto.id: d for d in at.dataframe}
    checked = 0
    for frame in at.dataframe:
        widths = _table_widths(frame)
        columns = list(widths)
        room = {"method": TABLE_PX, "rank": TABLE_PX, "detector": TABLE_IN_BOX_PX}.get(columns[0])
        if room is None:  # a narrow side table: a few short columns
            continue
        checked += 1
        assert all(w for _, w in widths.values()), widths
        assert sum(w for _, w in widths.values()) <= room, (columns, widths)
        for header, width in widths.values():
            assert width >= 28 + 6.5 * len(header), (header, width)
            assert len(header) <= 22, header  # the long ones are said in full on hover
    assert checked == 3 and tables, [list(_table_widths(d)) for d in at.dataframe]


def test_no_message_writes_a_count_with_a_bracketed_plural_or_a_wait_of_0_s():
    """'2 pass(es) of per-sample gradients', '1 model(s)', 'about 0 s': every count goes through plural() and every
    estimated wait through estimate_text() (a guard over the source: a new message writes them the same way)."""
    import re

    root = Path(__file__).resolve().parents[1]
    bracketed = re.compile(r"\{[^{}]*\} [A-Za-z-]+(?: [A-Za-z-]+)?\((?:s|es)\)")
    zero_wait = re.compile(r"about \{[^{}]*:\.0f\} s")
    found = [
        f"{path.relative_to(root)}:{n}: {line.strip()[:90]}"
        for folder in ("pages", "influence_core")
        for path in sorted((root / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if bracketed.search(line) or zero_wait.search(line)
    ]
    assert not found, found
