"""Streamlit helpers shared by the pages: progress, error display, the shared sidebar, memoised runs."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import streamlit as st

# light imports only: app.py imports this module before st.navigation, and torch (~1.5 s, far more on a busy
# machine) would hold back the navigation and leave Streamlit's raw file list over a blank page meanwhile
from influence_core import SIGN_CONVENTION
from influence_core.errors import CurvatureError, DataWarning, InputError
from influence_core.processes import start_process_pools_fresh
from influence_core.timing import Cost, duration_text

log = logging.getLogger("influence_lab")


def compute_seconds_text(seconds: float) -> str:
    """A measured compute time for a metric: '0.4 s', '12 s'; under 0.05 s '< 0.1 s' (a loaded model's scores take
    milliseconds, and '0.0 s' reads as nothing done)."""
    if seconds < 0.05:
        return "< 0.1 s"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def progress_text(fraction: float, elapsed: float, message: str = "", estimate: Optional[float] = None) -> str:
    """'42 % done, about 6 s left: message'. The time left extrapolates the pace so far (elapsed × (1 − f) / f); below
    2 % done, or in the first half second, there is no pace to go on yet: the estimate measured before the start
    (``estimate`` seconds in all) says it, where there is one. The work's fractions should follow its estimated costs
    (as the long pipelines' do), so the pace is not that of its first, cheapest step."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    if fraction >= 1.0:
        left = "finishing"
    elif fraction < 0.02 or elapsed < 0.5:
        left = f"about {duration_text(estimate * (1 - fraction))} left (estimated)" if estimate else "estimating the time left"
    else:
        left = f"about {duration_text(elapsed * (1 - fraction) / fraction)} left"
    return f"{fraction:.0%} done, {left}" + (f": {message}" if message else "")


@contextmanager
def progress_status(label: str, estimate: Optional[Cost] = None) -> Iterator[Callable[[float, str], None]]:
    """An st.status box with a progress bar; yields a ProgressFn for influence_core. The box's label (seen while
    collapsed) and the bar say the share done and the time left (from ``estimate`` until there is a pace); when done,
    the label says how long it took."""
    start = time.perf_counter()
    shown = [0.0]  # when the box was last redrawn: at most ~10 redraws a second, every one is a message to the browser
    expected = estimate.seconds if estimate is not None else None
    with st.status(
        label + (f": starting, {estimate.text()} estimated" if estimate is not None else ": starting"), expanded=False
    ) as status:
        bar = st.progress(0.0)

        def report(fraction: float, message: str) -> None:
            now = time.perf_counter()
            if now - shown[0] < 0.1 and fraction < 1.0:
                return
            shown[0] = now
            text = progress_text(fraction, now - start, message, expected)
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=text)
            status.update(label=f"{label}: {text.split(': ')[0]}")

        try:
            yield report
        except BaseException:  # a refusal (shown below by run_or_explain) must not leave the box reading "starting"
            status.update(label=f"{label}: stopped (see the message below)", state="error")
            raise
        status.update(label=f"{label}: done in {duration_text(time.perf_counter() - start)}", state="complete")


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
    confirmed = st.session_state.setdefault("_confirmed_starts", set())
    if cost is None or not cost.needs_confirmation or key in confirmed:
        return True
    st.info(f"{action} is estimated at {cost.text()} on this machine" + (f" ({cost.what})" if cost.what else "") + ".")
    if st.button(f"{action}: {cost.text()}", key="confirm_" + hashlib.sha256(key.encode()).hexdigest()[:16], type="primary"):
        confirmed.add(key)
        return True
    return False


# what a first visit to a view imports, with each module's rough share of the wait (measured with -X importtime)
HEAVY_IMPORTS = (
    ("torch", 1.5),
    ("torch._dynamo", 1.4),
    ("sklearn.datasets", 0.9),
    ("laplace", 0.4),
    ("pandas", 0.2),
    ("plotly.graph_objects", 0.2),
)


def preload_plotly(key: str):
    """An empty, invisible plotly chart sent before the page's imports: the browser fetches and compiles plotly.js
    (about 1 s on a 2-core machine, measured) while the server still imports torch, instead of after the page's first
    real figure arrives (the landing view's first plot came 1.3 s after its script ended; 0.4 s with this). Returns
    its slot: call ``.empty()`` on it once the page's results are computed."""
    slot = st.empty()
    blank = {
        "data": [{"type": "scatter", "x": [], "y": [], "hoverinfo": "skip"}],
        "layout": {"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "xaxis": {"visible": False}, "yaxis": {"visible": False}},
    }
    slot.plotly_chart(blank, config={"displayModeBar": False, "staticPlot": True}, key=key)
    return slot


def settle_widget(
    key: str,
    default: Any,
    options: Optional[Sequence[Any]] = None,
    bounds: Optional[tuple[Any, Any]] = None,
    basis: Any = None,
) -> Any:
    """The value a keyed widget is to show and the page to compute with, put in ``st.session_state[key]`` before the
    widget is drawn (issue 34): the value kept under ``key`` while it is still one of ``options`` (or within
    ``bounds``, both ends included), else ``default`` (itself brought into the options or bounds). With ``basis``
    (what the kept value was chosen for, e.g. the range of the data's scores), a new basis takes the default, as a
    widget keyed by it would. Call it on every run, right before drawing the widget with ``key=key`` and no
    ``index=`` / ``value=`` (the session state sets it).

    Why every run: a widget whose options or range follow the data or model came back showing one choice while the
    page computed with another (Label bias's Score box read "heldout" over a chart of "paper"; What-if's test-point box
    0 beside "Test #3"). When the data changes under a widget, or the page stops for a run and the widget comes back,
    the server may keep a value the browser does not show, or reset one the browser still shows. A value written here
    is sent to the browser with the widget, so the two agree whatever happened in between. A value the run cannot use
    (a disabled slider whose setting is ignored) is given as the only option: the widget then shows what is used."""
    if options is not None:
        options = list(options)
        if not options:
            st.session_state.pop(key, None)
            return None
        if not any(_same(default, option) for option in options):
            default = options[0]
    if bounds is not None:
        lo, hi = bounds
        default = min(max(default, lo), hi)
    value = st.session_state.get(key, default)
    if basis is not None:
        kept_for = st.session_state.get(f"_basis_of_{key}")
        if kept_for is not None and kept_for != basis:
            value = default
        st.session_state[f"_basis_of_{key}"] = basis
    if options is not None:
        # the option itself: a value stored from an earlier run may be a copy of another type (numpy's int64 for an int)
        value = next((option for option in options if _same(value, option)), default)
    if bounds is not None and not _within(value, lo, hi):
        value = default
    st.session_state[key] = value
    return value


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays and the like compare element by element
        return False


def _within(value: Any, lo: Any, hi: Any) -> bool:
    try:
        return bool(lo <= value <= hi)
    except TypeError:  # None, or a value of another kind
        return False


def short_name(description: str) -> str:
    """An option's name without its explanation: the text before the first " (", ", " or ": "."""
    return re.split(r" \(|, |: ", description, maxsplit=1)[0]


def described_select(
    container: Any,
    label: str,
    options: Sequence[Any],
    describe: Callable[[Any], str],
    short: Optional[Callable[[Any], str]] = None,
    **kwargs: Any,
) -> Any:
    """A select box showing each option's short name, with the chosen option's whole description in a caption under
    it and every option's in its help: a quarter of a 1280-px page holds about 20 characters, and the descriptions
    were cut off in the box (issue 20)."""
    short = short or (lambda option: short_name(describe(option)))
    if kwargs.get("help") is None:
        kwargs["help"] = "\n".join(f"- **{short(option)}**: {describe(option)}" for option in options)
    value = container.selectbox(label, options, format_func=short, **kwargs)
    if value is not None and describe(value) != short(value):
        container.caption(describe(value))
    return value


def _not_imported(modules: Optional[Sequence[tuple[str, float]]] = None) -> list[tuple[str, float]]:
    import sys

    return [(name, weight) for name, weight in (HEAVY_IMPORTS if modules is None else modules) if name not in sys.modules]


def imports_pending() -> bool:
    """Whether :func:`import_with_progress` still has work (a fresh server's first run)."""
    return bool(_not_imported())


def import_with_progress(
    modules: Optional[Sequence[tuple[str, float]]] = None, label: str = "Loading PyTorch and scikit-learn (once per server start)"
) -> None:
    """Import the modules not imported yet under a progress box: on a fresh server the first view's imports are
    seconds of blank page otherwise (torch, and torch._dynamo that torch.optim pulls in on first use). Then the
    sidebar's device line."""
    import importlib

    missing = _not_imported(modules)
    if missing:
        total = sum(weight for _, weight in missing)
        with progress_status(label) as report:
            done = 0.0
            for name, weight in missing:
                report(done / total, f"importing {name}")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation, raised on import
                    importlib.import_module(name)
                done += weight
            report(1.0, "imported")
    show_device()


def one_torch_thread():
    """Run small models' work (the explorer's 200-point toys) on one torch thread. On this 2-core machine with
    the other core busy, two OpenMP threads wait on each other at every tiny op: the landing view's training took
    6.1 s on two threads and 0.23 s on one (400 Adam steps of a 16-unit MLP). Large work keeps torch's default."""
    from influence_core.resources import torch_threads

    return torch_threads(1)


def run_or_explain(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Optional[Any]:
    """Call ``fn``; on bad input show what to fix, on anything else a short message (no traceback)."""
    try:
        return fn(*args, **kwargs)
    except (InputError, CurvatureError) as err:
        st.error(str(err))
    except MemoryError:
        st.error("Out of memory: use fewer training samples, the last-layer scope or a smaller model.")
    except Exception as err:  # noqa: BLE001 — the UI must not show a traceback; the log keeps it
        log.error("unexpected error\n%s", traceback.format_exc())
        st.error(f"Something went wrong ({type(err).__name__}: {err}). The full trace is in the terminal running the app.")
    return None


def memoised(key: str, compute: Callable[[], Any]) -> Any:
    """Keep results of this session in memory (the disk cache covers new sessions). What the data
    loaders warned about while computing (skipped files) is kept with the result and shown on every run.
    Key it on ``experiments.content_key(config)``, not ``config.key()``: the config names a user's file by
    path only, and an edited file must not bring back the old result."""
    store = st.session_state.setdefault("_results", {})
    if key not in store:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            value = compute()
        notes = []
        for w in caught:
            if issubclass(w.category, DataWarning):
                notes.append(str(w.message))
            else:  # not ours to show: back to the terminal, as if never caught
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        if value is None:
            for note in notes:
                st.warning(note)
            return None
        store[key] = (value, list(dict.fromkeys(notes)))
    value, notes = store[key]
    for note in notes:
        st.warning(note)
    return value


def kept_result(clicked: bool, store_key: str, compute: Callable[[], Any]) -> Optional[Any]:
    """A button's result that stays on screen after the click: ``compute`` runs on the click (through
    :func:`run_or_explain`, so a failure is explained and nothing is kept); returns the last result kept
    under ``store_key``."""
    if clicked:
        value = run_or_explain(compute)
        if value is not None:
            st.session_state[store_key] = value
    return st.session_state.get(store_key)


def gated_result(
    clicked: bool, store_key: str, action: str, estimate: Callable[[], Optional[Cost]], compute: Callable[[Optional[Cost]], Any]
) -> Optional[Any]:
    """:func:`kept_result` with the cost said first: a click has the work estimated (``estimate``, measured on this
    machine, kept for the session) and starts it at once when it is under ``timing.CONFIRM_SECONDS``, else after a
    second click on a button that states the estimate; ``compute(cost)`` shows it in its progress box."""
    asked = st.session_state.setdefault("_asked_starts", set())
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


NO_ID_COLUMN = "(row number)"


def csv_inputs(container: Any, key_prefix: str) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """Path of the user's CSV, then its label and id columns picked from its header:
    (path, label column, id column or None); (None, None, None) until a path is typed, and no
    columns while the path is wrong (its message is shown)."""
    from influence_core.data.tabular import csv_columns, guess_id_column, guess_label_column

    path = data_path(
        container,
        "CSV file",
        f"{key_prefix}_csv_path",
        "/path/to/table.csv",
        "Numeric feature columns and one label column (text or numbers); one header row.",
        ["csv", "tsv", "txt"],
    )
    if not path:
        return None, None, None
    with container:
        columns = run_or_explain(csv_columns, path)
    if not columns:
        return path, None, None
    # another file (or the same one changed): the column choices made for the last one would not fit it
    with container:
        fitted = (path, tuple(columns), run_or_explain(guess_id_column, path, columns, guess_label_column(columns)))
    if st.session_state.get(f"{key_prefix}_csv_fitted") != fitted:
        for widget in (f"{key_prefix}_label_column", f"{key_prefix}_id_column"):
            st.session_state.pop(widget, None)
        st.session_state[f"{key_prefix}_csv_fitted"] = fitted
    settle_widget(f"{key_prefix}_label_column", guess_label_column(columns), columns)
    label = container.selectbox("Label column", columns, key=f"{key_prefix}_label_column")
    ids = [NO_ID_COLUMN] + [c for c in columns if c != label]
    with container:
        guessed = run_or_explain(guess_id_column, path, columns, label)
    settle_widget(f"{key_prefix}_id_column", guessed if guessed in ids else NO_ID_COLUMN, ids)
    id_column = container.selectbox(
        "Id column",
        ids,
        key=f"{key_prefix}_id_column",
        help="Names each row in tables and exports; every other column is a feature.",
    )
    return path, label, None if id_column == NO_ID_COLUMN else id_column


def data_path(container: Any, label: str, key: str, placeholder: str, help: str, upload_types: list[str]) -> Optional[str]:
    """A path to the user's data: typed (a file on the server, if the server's data-root policy allows it) or
    uploaded from the browser (saved under the cache by content); None until there is one or while it is refused
    (the message is shown)."""
    from influence_core.data_access import check_server_path, save_upload

    typed = container.text_input(label, key=key, placeholder=placeholder, help=help).strip()
    upload = container.file_uploader(
        f"… or upload it ({', '.join('.' + t for t in upload_types)})",
        type=upload_types,
        key=f"{key}_upload",
        help="Kept under the app's cache folder by content; a zip of an image folder is unpacked there.",
    )
    with container:
        if upload is not None:
            return run_or_explain(save_upload, upload.name, upload.getvalue())
        if not typed:
            return None
        return run_or_explain(check_server_path, typed, st.get_option("server.address"))


OWN_DATA = {"csv": "Your CSV file", "image_folder": "Your image folder (one subfolder per class)"}


@dataclass
class OwnDataInputs:
    path: Optional[str] = None
    label_column: Optional[str] = None
    id_column: Optional[str] = None
    image_size: Optional[int] = None

    @property
    def complete(self) -> bool:
        return bool(self.path) and (self.label_column is not None or self.image_size is not None)


def own_data_inputs(container: Any, dataset: str, key_prefix: str) -> OwnDataInputs:
    """The inputs that name the user's data: a CSV (path, label and id columns) or an image folder
    (path, image size)."""
    if dataset == "csv":
        return OwnDataInputs(*csv_inputs(container, key_prefix))
    path = data_path(
        container,
        "Image folder",
        f"{key_prefix}_folder",
        "/path/to/images",
        "One subfolder per class; the subfolder names are the class names.",
        ["zip"],
    )
    size = container.select_slider("Image size (pixels)", [16, 28, 32, 64], 28, key=f"{key_prefix}_image_size")
    return OwnDataInputs(path=path, image_size=int(size))


def ask_for_own_data(dataset: str, inputs: OwnDataInputs) -> None:
    """Until the data is named, say what is expected (a wrong path has shown its message already); stop the run."""
    if not inputs.path:
        st.info(
            "Name your data above: "
            + (
                "a CSV file with numeric feature columns and a label column."
                if dataset == "csv"
                else "a folder with one subfolder of images per class."
            )
        )
    st.stop()


OWN_MODEL = "file"  # the model choice "your trained model": ModelConfig(kind="file")
ZOO_ARCHITECTURES = {
    "mlp": "MLP (Linear + activation, width × hidden layers)",
    "logreg": "logistic regression (one linear layer)",
    "cnn": "3-conv CNN (the zoo's)",
    "resnet18": "ResNet18",
    "torchvision": "another torchvision classifier…",
}
MODEL_FILE_TYPES = ["pt", "pth", "bin", "safetensors", "pt2"]


def own_model_inputs(container: Any, key_prefix: str, dataset: str) -> tuple[Optional[Any], Optional[dict]]:
    """The inputs that name the user's trained model: its file (weights or a torch.export program), the weights'
    architecture, optional earlier weight files as TracIn's checkpoints, and how its inputs were prepared.
    Returns (the model config, ``model_files.own_model_config``; the data's input settings,
    ``preprocessing.input_settings``), each None until a file is named or while refused (the message is shown)."""
    from influence_core.data_access import check_server_path
    from influence_core.model_files import own_model_config

    path = data_path(
        container,
        "Model file",
        f"{key_prefix}_model_file",
        "/path/to/model.safetensors",
        "Weights (a state_dict saved with torch.save, or safetensors) of an architecture named below, or a program "
        "saved with torch.export (.pt2). Read without running any code the file carries.",
        MODEL_FILE_TYPES,
    )
    program = bool(path) and path.endswith(".pt2")
    names = list(ZOO_ARCHITECTURES)
    arch = container.selectbox(
        "Architecture of the weights",
        names,
        index=names.index("cnn" if dataset == "image_folder" else "mlp"),
        format_func=ZOO_ARCHITECTURES.get,
        key=f"{key_prefix}_model_arch",
        disabled=program,
        help="A .pt2 program carries its own architecture.",
    )
    hidden, depth, activation = 32, 2, "relu"
    if arch == "torchvision":
        arch = container.text_input("torchvision name", "mobilenet_v3_small", key=f"{key_prefix}_model_tv").strip()
    elif arch == "mlp" and not program:
        w, d = container.columns(2)
        hidden = int(w.number_input("Width", 1, 4096, 32, key=f"{key_prefix}_model_hidden"))
        depth = int(d.number_input("Layers", 1, 16, 2, key=f"{key_prefix}_model_depth", help="hidden layers"))
        activation = container.selectbox(
            "Activation",
            ["relu", "tanh", "sigmoid"],
            key=f"{key_prefix}_model_activation",
            help="the one it was trained with: the weights do not say, and another one scores another model",
        )
    typed = container.text_area(
        "TracIn checkpoints (optional)",
        key=f"{key_prefix}_model_checkpoints",
        placeholder="earlier weight files, one path per line",
        help="TracIn sums over training checkpoints; without them it is not available for your model.",
        disabled=program,
    )
    # a toy's two coordinates go in as they are; a CSV's or an image folder's as the model was trained on them
    inputs = model_input_settings(container, key_prefix, dataset) if dataset in ("csv", "image_folder") else {}
    checkpoints: list[str] = []
    with container:
        for line in typed.splitlines():
            if line.strip():
                allowed = run_or_explain(check_server_path, line.strip(), st.get_option("server.address"))
                if allowed is None:
                    return None, None
                checkpoints.append(allowed)
        if not path or inputs is None:
            return None, None
        return run_or_explain(own_model_config, path, None if program else arch, hidden, depth, checkpoints, activation), inputs


def model_input_settings(container: Any, key_prefix: str, dataset: str) -> Optional[dict]:
    """How the user's model was fed (``preprocessing.input_settings``): a CSV's feature order, images' channels, the
    mean / std; empty fields keep the defaults. None while refused (the message is shown)."""
    from influence_core.data.preprocessing import input_settings

    tabular = dataset == "csv"
    with container.expander("Inputs as your model was trained on them"):
        columns, channels = "", None
        if tabular:
            columns = st.text_input(
                "Feature columns, in the model's order", key=f"{key_prefix}_model_columns", placeholder="a, b, c (empty: the file's order)"
            )
        else:
            channels = st.radio(
                "Channels", [1, 3], horizontal=True, key=f"{key_prefix}_model_channels", format_func={1: "grayscale", 3: "RGB"}.get
            )
        mean = st.text_input(
            "Mean",
            key=f"{key_prefix}_model_mean",
            placeholder="empty: " + ("standardised on the training split" if tabular else "pixels in [0, 1]"),
            help="one number, or one per " + ("feature" if tabular else "channel"),
        )
        std = st.text_input("Std", key=f"{key_prefix}_model_std", placeholder="e.g. 1 (raw features: mean 0, std 1)")
        return run_or_explain(input_settings, dataset, columns, channels, mean, std)


def own_model_card(metrics: dict[str, Any]) -> None:
    """What was loaded: parameter count, the input shape it takes, the layers influence is taken over."""
    described = metrics.get("own_model")
    if described:
        with st.expander(f"Your model, as loaded: {described['parameters']:,} parameters", expanded=False):
            st.dataframe({"": list(described), "value": [str(v) for v in described.values()]}, hide_index=True, width="stretch")


# (file, title, icon), relative to app.py; the first is the landing page on the embedded default dataset
PAGE_ICON = Path(__file__).resolve().parents[1] / "docs" / "icon.png"
VIEWS = [
    ("pages/explorer.py", "2D explorer", ":material/scatter_plot:"),
    ("pages/label_bias.py", "Label bias", ":material/label:"),
    ("pages/glitch_signals.py", "Glitch signals", ":material/bug_report:"),
    ("pages/what_if.py", "What-if", ":material/swap_horiz:"),
    ("pages/region_cuts.py", "Region cuts", ":material/flight:"),
    ("pages/trust.py", "Trust", ":material/verified:"),
]
_RUN_BY_APP = "_run_by_app_navigation"


def app_frame() -> Any:
    """Page config, ``st.navigation`` over the views and the shared sidebar."""
    start_process_pools_fresh()  # a library's process pool must not fork the server (influence_core.processes)
    # a local file: a material-icon favicon is fetched from a font server, which fails offline on every page
    st.set_page_config(page_title="Influence Lab", page_icon=str(PAGE_ICON), layout="wide")
    navigation = st.navigation([st.Page(file, title=title, icon=icon, default=(i == 0)) for i, (file, title, icon) in enumerate(VIEWS)])
    shared_sidebar()
    return navigation


def run_app() -> None:
    """app.py: navigation and sidebar, then the chosen page, marked as run through app.py."""
    navigation = app_frame()
    st.session_state[_RUN_BY_APP] = True
    navigation.run()


def page_header(title: str, device_after_imports: bool = False) -> None:
    """The page's title, with app.py's navigation and sidebar in place. The sidebar's device line follows at once,
    or, with ``device_after_imports``, at the page's :func:`import_with_progress` (it waits for torch).

    When the first visit to a freshly started server is a deep link (``/what_if``), Streamlit runs the page
    file alone in its legacy ``pages/`` mode: no shared sidebar, and a navigation listing ``app`` and ``ui``.
    The page then sets up the app's frame itself (which also ends that mode for the server).
    """
    if not st.session_state.pop(_RUN_BY_APP, False):
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is None:
            app_frame()
        else:
            # st.navigation switches the run to app.py's identity; keep this page's, or its widgets would
            # get new ids (and lose their values) on the next, normal run
            with ctx.run_with_active_hash(ctx.pages_manager.current_page_script_hash):
                app_frame()
    st.title(title)
    if not device_after_imports:
        show_device()


_DEVICE_SLOT = "_sidebar_device_slot"


def shared_sidebar() -> None:
    """The sidebar. Its device line (which imports torch) is written by :func:`show_device`, after the page's own
    first elements: the landing view shows its data while torch still loads."""
    with st.sidebar:
        st.session_state[_DEVICE_SLOT] = st.empty()
        st.caption("Influence sign: " + SIGN_CONVENTION + ".")
        from pages._compute import compute_setting_panel

        compute_setting_panel()


def show_device() -> None:
    """Write the sidebar's device line (once per run; imports torch)."""
    slot = st.session_state.pop(_DEVICE_SLOT, None)
    if slot is not None:
        from influence_core.device import default_device

        slot.caption(f"Device: **{default_device()}**")
