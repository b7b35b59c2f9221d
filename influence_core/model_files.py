"""Your own trained model: influence on a model you bring, without retraining it.

Two safe forms, and nothing else is unpickled:

- an architecture by name (the zoo's ``logreg`` / ``mlp`` / ``cnn`` / ``resnet18``, or any torchvision classifier such as
  ``resnet18`` / ``mobilenet_v3_small``) plus a weights file: a state_dict read with ``torch.load(weights_only=True)``
  (``.pt``, ``.pth``, ``.bin``) or ``.safetensors``;
- a program exported with ``torch.export`` (``.pt2``).

Every check runs before any work: the weights must match the architecture tensor for tensor (the first mismatch is
named), and the model must take the data's input shape and give one output per class.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from influence_core.config import ModelConfig
from influence_core.errors import InputError

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
PROGRAM_SUFFIXES = (".pt2",)


def file_fingerprint(path: str) -> str:
    """Content hash of a model file (the result cache is keyed on it: replace the weights and the next run recomputes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


def _architecture(arch: str, input_shape: tuple[int, ...], n_classes: int, hidden: int, depth: int, activation: str = "relu") -> nn.Module:
    from influence_core.config import MODEL_KINDS
    from influence_core.models import build_model

    if arch in MODEL_KINDS:
        return build_model(ModelConfig(kind=arch, hidden=hidden, depth=depth, activation=activation), input_shape, n_classes, 0)
    import torchvision

    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=n_classes)
    except ValueError:
        raise InputError(
            f"unknown architecture {arch!r}: use one of the zoo's {MODEL_KINDS} or a torchvision classifier "
            "name (torchvision.models.list_models())"
        ) from None


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or torch.load(weights_only=True), which refuses a pickle that carries code."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as err:  # noqa: BLE001 — safetensors raises its own error types
            raise InputError(f"cannot read {path} as safetensors: {err}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(
            f"refused {path}: it is not a plain state_dict (the file asks to run code, which is never done: "
            f"{str(err).splitlines()[0][:160]}); save model.state_dict() or use safetensors"
        ) from None
    except (RuntimeError, OSError, EOFError) as err:
        raise InputError(f"cannot read {path} as a PyTorch state_dict: {err}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a checkpoint dict around the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} holds no state_dict of tensors: save model.state_dict()")
    return state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Load, naming the first tensor that is missing, unexpected or of another shape."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise InputError(
                f"{path} does not fit this architecture: it has no tensor {name!r} (the file's first tensors: {', '.join(list(state)[:4])})"
            )
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise InputError(
                f"{path} does not fit this architecture: {name!r} is {tuple(state[name].shape)} in the file, "
                f"{tuple(tensor.shape)} in the model (another width, input size or class count?)"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise InputError(f"{path} does not fit this architecture: unexpected tensor {extra[0]!r}")
    model.load_state_dict({k: state[k].to(tensor.dtype) for k, tensor in expected.items()})


class ExportedModel(nn.Module):
    """A torch.export program as a module the engine can use: the program has no train/eval modes (it was exported
    in the one it runs in), so switching modes leaves it alone."""

    def __init__(self, program_module: nn.Module):
        super().__init__()
        self.program = program_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> "ExportedModel":
        self.training = mode
        return self


def load_program(path: str) -> nn.Module:
    try:
        program = torch.export.load(path)
    except Exception as err:  # noqa: BLE001 — torch.export raises several types for a bad archive
        raise InputError(f"cannot read {path} as a torch.export program: {err}") from None
    return ExportedModel(program.module())


def check_fits_data(model: nn.Module, input_shape: tuple[int, ...], n_classes: int, what: str) -> None:
    """One forward of a zero batch of the data's shape: refused, naming both shapes, if the model does not take it."""
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros((3, *input_shape), dtype=dtype))
    except Exception as err:  # noqa: BLE001 — any layer can refuse a shape, each in its own words
        raise InputError(
            f"{what} does not take this data's input of shape {tuple(input_shape)} (per sample): "
            f"{str(err).splitlines()[0][:200]}; match the image size / channels, or the CSV's feature columns"
        ) from None
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=dtype))
    except Exception:  # noqa: BLE001
        raise InputError(
            f"{what} takes batches of one size only: export it with a dynamic batch dimension, e.g. "
            "torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch', min=1)},))"
        ) from None
    if out.dim() != 2 or out.shape[1] != n_classes:
        raise InputError(f"{what} gives outputs of shape {tuple(out.shape[1:])} per sample; this data has {n_classes} classes")


@dataclass
class LoadedModel:
    model: nn.Module
    checkpoints: list  # training.Checkpoint from extra weight files (TracIn), lr 1 each
    description: dict


def load_user_model(
    path: str,
    arch: Optional[str],
    input_shape: tuple[int, ...],
    n_classes: int,
    hidden: int = 32,
    depth: int = 2,
    checkpoint_files: Sequence[str] = (),
    activation: str = "relu",
) -> LoadedModel:
    """The user's model, checked against the data; extra weight files become checkpoints for TracIn."""
    from influence_core.models import parameter_names
    from influence_core.training import Checkpoint

    file = Path(path)
    if not file.is_file():
        raise InputError(f"model file {path} does not exist")
    if file.suffix in PROGRAM_SUFFIXES:
        if checkpoint_files:
            raise InputError("checkpoints are weight files of an architecture: give --arch and state_dicts, not a .pt2 program")
        model = load_program(path)
        what = f"the exported program {file.name}"
    elif file.suffix in WEIGHT_SUFFIXES:
        if not arch:
            raise InputError(f"{file.name} holds weights only: name their architecture (--arch, e.g. mlp, cnn, resnet18)")
        model = _architecture(arch, input_shape, n_classes, hidden, depth, activation)
        load_weights(model, read_state_dict(path), path)
        what = f"{arch} with {file.name}"
    else:
        raise InputError(f"{file.name}: give a state_dict (.pt, .pth, .bin), .safetensors or a torch.export program (.pt2)")
    for p in model.parameters():
        p.requires_grad_(True)
    check_fits_data(model, input_shape, n_classes, what)
    checkpoints = []
    for k, extra in enumerate(checkpoint_files):
        state = read_state_dict(extra)
        load_weights(_architecture(arch, input_shape, n_classes, hidden, depth, activation), state, extra)  # checked like the model
        checkpoints.append(Checkpoint(k + 1, 1.0, {n: t.clone() for n, t in state.items()}))
    from influence_core.curvatures.base import head_names

    names = parameter_names(model, "all")
    description = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "input shape": tuple(input_shape),
        "classes": n_classes,
        **({"activation": activation} if arch == "mlp" else {}),
        "last layer": ", ".join(head_names(model)) or "none found (an exported program keeps no layers: all-parameter curvatures only)",
        "layers": len(names),
    }
    return LoadedModel(model.eval(), checkpoints, description)


def own_model_config(
    file: str,
    arch: Optional[str] = None,
    hidden: int = 32,
    depth: int = 2,
    checkpoint_files: Sequence[str] = (),
    activation: str = "relu",
) -> ModelConfig:
    """The model config of a model the user brings, checked for what can be told without loading it: the file's form,
    and an architecture named for weights (the app and the CLI build it here, so both refuse the same things)."""
    suffix = Path(file).suffix
    if suffix not in (*WEIGHT_SUFFIXES, *PROGRAM_SUFFIXES):
        raise InputError(f"{Path(file).name}: give a state_dict (.pt, .pth, .bin), .safetensors or a torch.export program (.pt2)")
    if suffix in PROGRAM_SUFFIXES:
        if checkpoint_files:
            raise InputError("checkpoints are weight files of an architecture: name it and give state_dicts, not a .pt2 program")
        arch = None  # a program carries its own architecture
    elif not arch:
        raise InputError(f"{Path(file).name} holds weights only: name their architecture (e.g. mlp, cnn, resnet18)")
    from influence_core.models import ACTIVATIONS

    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    return ModelConfig(
        kind="file",
        file=str(file),
        arch=arch,
        hidden=int(hidden),
        depth=int(depth),
        activation=activation,
        checkpoint_files=tuple(checkpoint_files),
    )
