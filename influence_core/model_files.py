"""Your own trained model: influence on a model you bring, without retraining it.

Two safe forms, and nothing else is unpickled:

- an architecture by name (the zoo's ``logreg`` / ``mlp`` / ``cnn`` / ``resnet18``, or any torchvision classifier such as
  ``resnet18`` / ``mobilenet_v3_small``, built untrained for the file's class count) plus a weights file: a state_dict
  read with ``torch.load(weights_only=True)`` (``.pt``, ``.pth``, ``.bin``) or ``.safetensors``. A name both have
  (``resnet18``) means the zoo's where the weights fit it (its ``body.`` / ``head.`` tensors) and torchvision's otherwise;
  ``zoo:NAME`` / ``torchvision:NAME`` pin one;
- a program exported with ``torch.export`` (``.pt2``).

Every check runs before any work: the weights must match the architecture tensor for tensor (the first mismatch is
named, and the architecture the file's tensors do fit), and the model must take the data's input shape and give one
output per class.
"""

from __future__ import annotations

import hashlib
import json
import os
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


ARCH_SOURCES = {"zoo": "the zoo's", "torchvision": "torchvision's"}


def torchvision_classifiers() -> list[str]:
    """The names of torchvision's classification models (not its detection / segmentation / video ones)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


@dataclass(frozen=True)
class Architecture:
    """An architecture by name: the zoo's (``models.build_model``) or a torchvision classifier's."""

    source: str  # "zoo" or "torchvision"
    name: str

    @property
    def spelled(self) -> str:
        return f"{self.source}:{self.name}"

    @property
    def label(self) -> str:
        return f"{ARCH_SOURCES[self.source]} {self.name}"

    def build(self, input_shape: tuple[int, ...], n_classes: int, hidden: int, depth: int, activation: str = "relu") -> nn.Module:
        if self.source == "zoo":
            from influence_core.models import build_model

            return build_model(ModelConfig(kind=self.name, hidden=hidden, depth=depth, activation=activation), input_shape, n_classes, 0)
        import torchvision

        # never pretrained weights (nothing is downloaded): the file's are loaded over these; googlenet's and
        # inception's own initialisation is slow and would be overwritten
        slow_init = {"init_weights": False} if self.name in ("googlenet", "inception_v3") else {}
        return torchvision.models.get_model(self.name, weights=None, num_classes=n_classes, **slow_init)


def parse_arch(arch: str) -> list[Architecture]:
    """The architectures a name can mean, the zoo's first: ``zoo:NAME`` or ``torchvision:NAME`` pins one; a bare name
    means the zoo's and torchvision's where both have it (``resnet18``: the weights' tensor names decide)."""
    from influence_core.config import MODEL_KINDS

    source, sep, name = arch.strip().partition(":")
    if not sep:
        source, name = "", source
    elif source not in ARCH_SOURCES:
        raise InputError(f"architecture {arch!r}: the prefix is zoo: or torchvision:, e.g. torchvision:{name or 'resnet18'}")
    found = {"zoo": name in MODEL_KINDS, "torchvision": name in torchvision_classifiers()}
    if source and not found[source]:
        other = next(s for s in ARCH_SOURCES if s != source)
        raise InputError(
            f"{_owner(source)} has no architecture {name!r}: "
            + (f"{_owner(other)} has, use {other}:{name}" if found[other] else _known(source))
        )
    candidates = [Architecture(s, name) for s in ARCH_SOURCES if source in ("", s) and found[s]]
    if not candidates:
        raise InputError(
            f"unknown architecture {arch!r}: use one of the zoo's {MODEL_KINDS} or a torchvision classifier "
            "name (torchvision.models.list_models(module=torchvision.models))"
        )
    return candidates


def _owner(source: str) -> str:
    return "the zoo" if source == "zoo" else source


def _known(source: str) -> str:
    from influence_core.config import MODEL_KINDS

    if source == "zoo":
        return "it has " + ", ".join(MODEL_KINDS)
    return "its classifiers are torchvision.models.list_models(module=torchvision.models)"


def canonical_arch(arch: str) -> str:
    """The shortest spelling that means the same: a prefix only where the zoo and torchvision share the name."""
    candidates = parse_arch(arch)
    if len(candidates) == 1 and len(parse_arch(candidates[0].name)) == 1:
        return candidates[0].name
    return arch.strip()


def _misfit(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> Optional[str]:
    """The first tensor that is missing, of another shape or unexpected; None when the weights fit."""
    for name, tensor in expected.items():
        if name not in state:
            return f"it has no tensor {name!r} (the file's first tensors: {', '.join(list(state)[:4])})"
        if tuple(state[name].shape) != tuple(tensor.shape):
            return (
                f"{name!r} is {tuple(state[name].shape)} in the file, {tuple(tensor.shape)} in the model "
                "(another width, input size or class count?)"
            )
    extra = [k for k in state if k not in expected]
    return f"unexpected tensor {extra[0]!r}" if extra else None


def _file_classes(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], n_classes: int) -> Optional[int]:
    """The class count of weights that differ from ``expected`` (built for ``n_classes``) only in the classifier:
    each tensor of another shape has ``n_classes`` rows in the model and the same other dimensions in the file."""
    if set(expected) != set(state):
        return None
    counts = set()
    for name, tensor in expected.items():
        have, want = tuple(state[name].shape), tuple(tensor.shape)
        if have != want:
            if not want or want[0] != n_classes or len(have) != len(want) or have[1:] != want[1:]:
                return None
            counts.add(have[0])
    return counts.pop() if len(counts) == 1 else None


def _skeleton(arch: Architecture) -> Optional[dict[str, tuple[int, ...]]]:
    """A torchvision classifier's tensors' shapes (built on the meta device: nothing allocated); None for one that
    cannot be built there (regnet computes its widths from tensors). The shapes are kept per torchvision version, in
    this process and in the results cache: a file that fits no classifier was compared with all of them, built one by
    one, and its refusal took 18 s (issue 34)."""
    shapes = _skeleton_shapes().get(arch.name, _UNBUILT)
    if shapes is _UNBUILT:
        shapes = _SKELETONS[arch.name] = _build_skeleton(arch)
        _UNSTORED.add(arch.name)
    return shapes


_UNBUILT = object()
_SKELETONS: dict[str, Optional[dict[str, tuple[int, ...]]]] = {}
_UNSTORED: set[str] = set()  # built in this process since the file was last written


def _skeleton_file() -> Path:
    import torchvision

    from influence_core.cache import cache_root

    return cache_root() / "torchvision_skeletons" / f"{torchvision.__version__}.json"


def _skeleton_shapes() -> dict[str, Optional[dict[str, tuple[int, ...]]]]:
    if not _SKELETONS:
        try:
            stored = json.loads(_skeleton_file().read_text())
            _SKELETONS.update({name: None if s is None else {k: tuple(v) for k, v in s.items()} for name, s in stored.items()})
        except (OSError, ValueError):  # not stored yet, or unreadable: built again
            pass
    return _SKELETONS


def _store_skeletons() -> None:
    if not _UNSTORED:
        return
    try:
        path = _skeleton_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(_SKELETONS))
        os.replace(temporary, path)  # whole or not at all: two servers may write it at once
        _UNSTORED.clear()
    except OSError:  # a read-only cache folder: kept in this process only
        pass


def _build_skeleton(arch: Architecture) -> Optional[dict[str, tuple[int, ...]]]:
    import warnings

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {name: tuple(t.shape) for name, t in arch.build((3, 224, 224), 1000, 0, 0).state_dict().items()}
    except Exception:  # noqa: BLE001 — any model's constructor may refuse the meta device
        return None


def _zoo_like(state: dict[str, torch.Tensor]) -> bool:
    return all(k.startswith(("body.", "head.")) for k in state)


def identify(state: dict[str, torch.Tensor], near: str = "") -> Optional[Architecture]:
    """The architecture whose tensors the file's are (any class count), told by their names and shapes: the zoo's
    by its layout, a torchvision classifier by comparing with each (``near``'s family first); None when none is."""
    import re

    if _zoo_like(state):
        body = [k for k in state if k.startswith("body.")]
        if "body.conv1.weight" in state:
            return Architecture("zoo", "resnet18")
        if not body:
            return Architecture("zoo", "logreg")
        first = state.get("body.0.weight")
        if first is not None:
            return Architecture("zoo", "cnn" if first.dim() == 4 else "mlp")
        return None
    family = re.match(r"[a-z]*", near).group(0)
    names = sorted(torchvision_classifiers(), key=lambda n: (not (family and n.startswith(family)), n))
    same_names = None
    try:
        for name in names:
            shapes = _skeleton(Architecture("torchvision", name))
            if shapes is None or set(shapes) != set(state):
                continue
            expected = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
            if _misfit(expected, state) is None or _file_classes(expected, state, 1000) is not None:
                return Architecture("torchvision", name)
            same_names = same_names or Architecture("torchvision", name)  # resnet50 / resnext50 / wide_resnet50: shapes tell
        return same_names
    finally:
        _store_skeletons()


def resolve_architecture(
    arch: str,
    state: dict[str, torch.Tensor],
    path: str,
    input_shape: tuple[int, ...],
    n_classes: int,
    hidden: int = 32,
    depth: int = 2,
    activation: str = "relu",
) -> tuple[Architecture, nn.Module]:
    """The model ``arch`` names, with ``state`` loaded: of the architectures the name can mean, the first the weights
    fit (the zoo's takes precedence only where they fit it), built for the file's class count. Refused, naming the
    first mismatched tensor and the architecture the file does hold, when none fits."""
    # a name both have: the zoo's (its body. / head. tensors) cannot fit a file of another layout, so try that first
    candidates = sorted(parse_arch(arch), key=lambda c: (c.source == "zoo") != _zoo_like(state))
    problems = []
    for candidate in candidates:
        model = candidate.build(input_shape, n_classes, hidden, depth, activation)
        classes = _file_classes(model.state_dict(), state, n_classes)
        if classes is not None and classes != n_classes:  # built for the file's classes (then checked against the data's)
            model = candidate.build(input_shape, classes, hidden, depth, activation)
        problem = _misfit(model.state_dict(), state)
        if problem is None:
            load_weights(model, state, path)
            return candidate, model
        problems.append(problem)
    # the first one's mismatch (of the file's layout), and the fix if the file holds another architecture
    held = identify(state, candidates[0].name)
    fix = ""
    if held is not None and held not in candidates:
        spelled = held.spelled if len(parse_arch(held.name)) > 1 else held.name
        fix = f"; this file holds {held.label} weights: use --arch {spelled}"
    elif held is None:
        fix = "; pick the architecture (and its width and layers) the weights were saved from"
    raise InputError(f"{path} does not fit this architecture ({candidates[0].label}): {problems[0]}{fix}")


def retrainable_zoo_kind(model: ModelConfig) -> tuple[Optional[str], str]:
    """(the zoo model a user's weights are, why not): the architecture this project can train from scratch for a
    model the user brings: ``mlp``, ``zoo:resnet18``, or a bare ``resnet18`` whose file has the zoo's layout. A
    program (.pt2) or a torchvision architecture has none, and the reason says so."""
    if model.arch is None:
        return None, "a .pt2 program has no architecture to retrain"
    zoo = [c for c in parse_arch(model.arch) if c.source == "zoo"]
    if zoo and (len(parse_arch(model.arch)) == 1 or _zoo_like(read_state_dict(model.file))):
        return zoo[0].name, ""
    return None, f"{model.arch!r} is a torchvision architecture (this project retrains only its zoo's)"


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
        raise InputError(_refused_pickle(path, str(err))) from None
    except EOFError:
        raise InputError(f"{path} is empty or cut short: save it again with torch.save(model.state_dict(), path)") from None
    except (RuntimeError, OSError) as err:
        raise InputError(f"cannot read {path} as a PyTorch state_dict: {err}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a checkpoint dict around the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} holds no state_dict of tensors: save model.state_dict()")
    return state


def _refused_pickle(path: str, error: str) -> str:
    """What torch.load(weights_only=True) refused, in one complete sentence and the fix: torch's own message is a
    paragraph about PyTorch 2.6's defaults (the page showed its first 160 characters, cut mid-word); its one line that
    says why follows "WeightsUnpickler error:"."""
    why = error.partition("WeightsUnpickler error:")[2].strip().splitlines()
    why = why[0].strip() if why else ""
    if why.startswith("Unsupported global"):  # a pickled object: loading it would run the code it names
        name = why.split("GLOBAL", 1)[-1].split()[0] if "GLOBAL" in why else "an object"
        return (
            f"refused {path}: it holds a pickled {name}, not a state_dict of tensors, and asks to run code, which is "
            "never done: save torch.save(model.state_dict(), path) or use safetensors"
        )
    # anything else ("Unsupported operand 110": not a pickle, or one torch.save did not write) says nothing to act on
    return (
        f"refused {path}: it is not a weights file that torch.save wrote (any other pickle is never loaded: it could "
        "run code): save the model with torch.save(model.state_dict(), path) or as .safetensors"
    )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Load, naming the first tensor that is missing, unexpected or of another shape."""
    expected = model.state_dict()
    problem = _misfit(expected, state)
    if problem is not None:
        raise InputError(f"{path} does not fit this architecture: {problem}")
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
        model, architecture = load_program(path), None
        what = f"the exported program {file.name}"
    elif file.suffix in WEIGHT_SUFFIXES:
        if not arch:
            raise InputError(f"{file.name} holds weights only: name their architecture (--arch, e.g. mlp, cnn, resnet18)")
        architecture, model = resolve_architecture(arch, read_state_dict(path), path, input_shape, n_classes, hidden, depth, activation)
        what = f"{architecture.label} with {file.name}"
    else:
        raise InputError(f"{file.name}: give a state_dict (.pt, .pth, .bin), .safetensors or a torch.export program (.pt2)")
    for p in model.parameters():
        p.requires_grad_(True)
    check_fits_data(model, input_shape, n_classes, what)
    checkpoints = []
    for k, extra in enumerate(checkpoint_files):
        state = read_state_dict(extra)
        # checked like the model, as the architecture its weights were read as
        load_weights(architecture.build(input_shape, n_classes, hidden, depth, activation), state, extra)
        checkpoints.append(Checkpoint(k + 1, 1.0, {n: t.clone() for n, t in state.items()}))
    from influence_core.models import head_names

    names = parameter_names(model, "all")
    description = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "input shape": tuple(input_shape),
        "classes": n_classes,
        **({"activation": activation} if architecture == Architecture("zoo", "mlp") else {}),
        "last layer": ", ".join(head_names(model)) or "none found (an exported program keeps no layers: all-parameter curvatures only)",
        "layers": len(names),
        **({"architecture": architecture.spelled} if architecture else {}),
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
    for path in (file, *checkpoint_files):
        if not Path(path).is_file():  # a typo: said here, before the result cache reads the file to key it
            raise InputError(f"no file at {path}: check the path (it is read on the machine that runs the app)")
    suffix = Path(file).suffix
    if suffix not in (*WEIGHT_SUFFIXES, *PROGRAM_SUFFIXES):
        raise InputError(f"{Path(file).name}: give a state_dict (.pt, .pth, .bin), .safetensors or a torch.export program (.pt2)")
    if suffix in PROGRAM_SUFFIXES:
        if checkpoint_files:
            raise InputError("checkpoints are weight files of an architecture: name it and give state_dicts, not a .pt2 program")
        arch = None  # a program carries its own architecture
    elif not arch:
        raise InputError(f"{Path(file).name} holds weights only: name their architecture (e.g. mlp, cnn, resnet18)")
    else:
        arch = canonical_arch(arch)  # an unknown name is refused here; zoo:mlp and mlp are one model (and cache key)
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
