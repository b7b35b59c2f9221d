"""The inputs that name the user's own data (a CSV, an image folder) and own trained model, and what was loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import streamlit as st

from pages._results import run_or_explain
from pages._widgets import settle_widget

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
    label = container.selectbox("Label column", columns, key=f"{key_prefix}_label_column", persist_state="session")
    ids = [NO_ID_COLUMN] + [c for c in columns if c != label]
    with container:
        guessed = run_or_explain(guess_id_column, path, columns, label)
    settle_widget(f"{key_prefix}_id_column", guessed if guessed in ids else NO_ID_COLUMN, ids)
    id_column = container.selectbox(
        "Id column",
        ids,
        key=f"{key_prefix}_id_column",
        persist_state="session",
        help="Names each row in tables and exports; every other column is a feature.",
    )
    return path, label, None if id_column == NO_ID_COLUMN else id_column


def data_path(container: Any, label: str, key: str, placeholder: str, help: str, upload_types: list[str]) -> Optional[str]:
    """A path to the user's data: typed (a file on the server, if the server's data-root policy allows it) or
    uploaded from the browser (saved under the cache by content); None until there is one or while it is refused
    (the message is shown)."""
    from influence_core.data_access import check_server_path, save_upload

    typed = container.text_input(label, key=key, persist_state="session", placeholder=placeholder, help=help).strip()
    kept = f"_{key}_uploaded"  # (name, saved path) of this session's upload: a file uploader cannot keep its file
    upload = container.file_uploader(
        f"… or upload it ({', '.join('.' + t for t in upload_types)})",
        type=upload_types,
        key=f"{key}_upload",
        help="Kept under the app's cache folder by content; a zip of an image folder is unpacked there.",
        on_change=_upload_changed,
        args=(f"{key}_upload", kept),
    )
    with container:
        if upload is not None:
            path = run_or_explain(save_upload, upload.name, upload.getvalue())
            if path is not None:
                st.session_state[kept] = (upload.name, path)
            return path
        if not typed and kept in st.session_state:
            # back from another view, the uploader is empty (Streamlit drops it) and the person had to upload again
            name, path = st.session_state[kept]
            st.caption(f"Using {name}, uploaded earlier in this session (upload another file, or remove it, to change).")
            return path
        if not typed:
            return None
        return run_or_explain(check_server_path, typed, st.get_option("server.address"))


def _upload_changed(uploader: str, kept: str) -> None:
    # the person removed the file (x): the upload kept for later visits goes too; a new file replaces it when saved
    if st.session_state.get(uploader) is None:
        st.session_state.pop(kept, None)


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
    size = container.select_slider("Image size (pixels)", [16, 28, 32, 64], 28, key=f"{key_prefix}_image_size", persist_state="session")
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
        persist_state="session",
        disabled=program,
        help="A .pt2 program carries its own architecture.",
    )
    hidden, depth, activation = 32, 2, "relu"
    if arch == "torchvision":
        arch = container.text_input("torchvision name", "mobilenet_v3_small", key=f"{key_prefix}_model_tv", persist_state="session").strip()
    elif arch == "mlp" and not program:
        w, d = container.columns(2)
        hidden = int(w.number_input("Width", 1, 4096, 32, key=f"{key_prefix}_model_hidden", persist_state="session"))
        depth = int(d.number_input("Layers", 1, 16, 2, key=f"{key_prefix}_model_depth", persist_state="session", help="hidden layers"))
        activation = container.selectbox(
            "Activation",
            ["relu", "tanh", "sigmoid"],
            key=f"{key_prefix}_model_activation",
            persist_state="session",
            help="the one it was trained with: the weights do not say, and another one scores another model",
        )
    typed = container.text_area(
        "TracIn checkpoints (optional)",
        key=f"{key_prefix}_model_checkpoints",
        persist_state="session",
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
                "Feature columns, in the model's order",
                key=f"{key_prefix}_model_columns",
                persist_state="session",
                placeholder="a, b, c (empty: the file's order)",
            )
        else:
            channels = st.radio(
                "Channels",
                [1, 3],
                horizontal=True,
                key=f"{key_prefix}_model_channels",
                persist_state="session",
                format_func={1: "grayscale", 3: "RGB"}.get,
            )
        mean = st.text_input(
            "Mean",
            key=f"{key_prefix}_model_mean",
            persist_state="session",
            placeholder="empty: " + ("standardised on the training split" if tabular else "pixels in [0, 1]"),
            help="one number, or one per " + ("feature" if tabular else "channel"),
        )
        std = st.text_input(
            "Std", key=f"{key_prefix}_model_std", persist_state="session", placeholder="e.g. 1 (raw features: mean 0, std 1)"
        )
        return run_or_explain(input_settings, dataset, columns, channels, mean, std)


def own_model_card(metrics: dict[str, Any]) -> None:
    """What was loaded: parameter count, the input shape it takes, the layers influence is taken over."""
    described = metrics.get("own_model")
    if described:
        with st.expander(f"Your model, as loaded: {described['parameters']:,} parameters", expanded=False):
            st.dataframe({"": list(described), "value": [str(v) for v in described.values()]}, hide_index=True, width="stretch")
