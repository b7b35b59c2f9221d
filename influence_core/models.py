"""Model zoo: L2 logistic regression, MLP, small 3-conv CNN, ResNet18.

Every model ends in a ``nn.Linear`` named ``head`` (the "last layer" for last-layer influence).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from influence_core.config import ModelConfig
from influence_core.errors import InputError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class LogisticRegression(nn.Module):
    """Multinomial logistic regression (softmax over a linear map); binary = 2 classes."""

    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.head = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


class MLP(nn.Module):
    def __init__(self, n_features: int, n_classes: int, hidden: int = 32, depth: int = 2, activation: str = "relu"):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


class SmallCNN(nn.Module):
    """Three 3×3 conv layers (stride 2 after the first) and a linear head; ~15k parameters on MNIST."""

    def __init__(self, in_channels: int, n_classes: int, image_size: int, width: int = 16, activation: str = "relu", pooling: str = "max"):
        super().__init__()
        act = ACTIVATIONS[activation]  # a smooth one (tanh) for exact attribution's smooth training
        # average pooling is smooth in the weights; max pooling switches which input passes as they move
        pool = nn.AvgPool2d if pooling == "avg" else nn.MaxPool2d
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            act(),
            pool(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            act(),
            pool(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            act(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def resnet18(in_channels: int, n_classes: int, pretrained_weights: Optional[str] = None) -> nn.Module:
    """torchvision ResNet18 with its classifier renamed ``head``; ImageNet weights from a local file if given."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    if pretrained_weights:
        try:
            state = torch.load(pretrained_weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as err:
            raise InputError(f"cannot read ResNet18 weights from {pretrained_weights}: {err}") from err
        net.load_state_dict(state)
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        with torch.no_grad():
            net.conv1.weight.copy_(old.weight.mean(1, keepdim=True).repeat(1, in_channels, 1, 1))

    class ResNetWithHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            net.fc = nn.Identity()
            self.body = net
            self.head = nn.Linear(512, n_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    return ResNetWithHead()


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int, seed: int) -> nn.Module:
    """Instantiate the configured model with seeded initial weights."""
    torch.manual_seed(seed)
    n_features = int(torch.tensor(input_shape).prod())
    if cfg.kind == "logreg":
        return LogisticRegression(n_features, n_classes)
    if cfg.kind == "mlp":
        return MLP(n_features, n_classes, cfg.hidden, cfg.depth, cfg.activation)
    if cfg.kind in ("cnn", "resnet18"):
        if len(input_shape) != 3:
            raise InputError(f"a {cfg.kind} needs image input (C, H, W); this dataset has shape {input_shape}: pick logreg or mlp")
        if cfg.kind == "cnn":
            return SmallCNN(input_shape[0], n_classes, input_shape[1], activation=cfg.activation, pooling=cfg.pooling)
        return resnet18(input_shape[0], n_classes, cfg.pretrained_weights)
    raise InputError(f"unknown model kind {cfg.kind!r}")


def head_module(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last linear layer, whose output is the logits: the zoo's ``head``, else the last ``nn.Linear`` a model
    registers (torchvision's ``fc`` / ``classifier.N``, a user's own model)."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return "head", head
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError("the model has no nn.Linear layer: last-layer influence needs one that outputs the logits")
    return linears[-1]


def parameter_names(model: nn.Module, scope: str) -> list[str]:
    """Names of the parameters influence is taken over: all, or the last linear layer (:func:`head_module`)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if scope == "last_layer":
        prefix = head_module(model)[0] + "."
        return [n for n in names if n.startswith(prefix)]
    return names


def head_names(model: nn.Module) -> list[str]:
    """The trainable parameters of the last linear layer (empty when the model has none)."""
    try:
        return parameter_names(model, "last_layer")
    except InputError:
        return []


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]
