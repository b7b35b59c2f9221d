"""Per-sample gradients: both backends against a plain one-sample-at-a-time autograd loop."""

import pytest
import torch
from torch import nn

from influence_core import gradients
from influence_core.gradients import (
    iter_per_sample_grads,
    layers_unsupported_reason,
    n_params,
    param_columns,
    per_sample_grad_sq_norms,
    per_sample_grads,
    resolve_backend,
)
from influence_core.models import MLP, LogisticRegression, SmallCNN, parameter_names, resnet18

BACKENDS = ["vmap", "layers"]


def loop_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names=None) -> torch.Tensor:
    """Reference: loss.backward() for one sample at a time, flattened in ``names`` order."""
    model.eval()
    params = dict(model.named_parameters())
    names = list(names) if names is not None else list(params)
    rows = []
    for i in range(len(x)):
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        loss.backward()
        rows.append(torch.cat([params[n].grad.reshape(-1) for n in names]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def _data(shape, n, n_classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, n_classes, (n,), generator=g)


def _models():
    torch.manual_seed(0)
    return {
        "logreg": (LogisticRegression(5, 3).double(), (5,)),
        "mlp_relu": (MLP(6, 3, hidden=7, depth=2, activation="relu").double(), (6,)),
        "mlp_sigmoid": (MLP(6, 3, hidden=7, depth=2, activation="sigmoid").double(), (6,)),
        "cnn_12": (SmallCNN(1, 3, 12, width=4).double(), (1, 12, 12)),
        "cnn_28": (SmallCNN(1, 3, 28, width=4).double(), (1, 28, 28)),
    }


MODELS = _models()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(MODELS))
def test_backends_match_autograd_loop(kind, backend):
    model, shape = MODELS[kind]
    x, y = _data(shape, 9)
    expected = loop_grads(model, x, y)
    got = per_sample_grads(model, x, y, backend=backend, chunk_size=4)
    assert got.shape == (9, n_params(model))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert resolve_backend(model, None, "auto") == "layers"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mlp_relu", "cnn_28"])
def test_last_layer_subset_is_columns_of_full_gradient(kind, backend):
    model, shape = MODELS[kind]
    x, y = _data(shape, 6, seed=1)
    full = per_sample_grads(model, x, y, backend=backend)
    head = parameter_names(model, "last_layer")
    assert head == ["head.weight", "head.bias"]
    sub = per_sample_grads(model, x, y, param_names=head, backend=backend)
    cols = param_columns(model)
    expected = torch.cat([full[:, cols[n]] for n in head], dim=1)
    torch.testing.assert_close(sub, expected, rtol=1e-12, atol=1e-14)
    # any order and any subset: columns follow param_names
    names = ["head.bias", "body.0.weight"]
    sub2 = per_sample_grads(model, x, y, param_names=names, backend=backend)
    torch.testing.assert_close(sub2, torch.cat([full[:, cols[n]] for n in names], dim=1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mlp_sigmoid", "cnn_12"])
def test_chunk_size_does_not_change_results(kind, backend):
    model, shape = MODELS[kind]
    x, y = _data(shape, 11, seed=2)
    ref = per_sample_grads(model, x, y, backend=backend, chunk_size=11)
    for chunk in (1, 3, 5, 100):
        starts = [s for s, _ in iter_per_sample_grads(model, x, y, chunk_size=chunk, backend=backend)]
        assert starts == list(range(0, 11, chunk))
        torch.testing.assert_close(per_sample_grads(model, x, y, backend=backend, chunk_size=chunk), ref, rtol=1e-12, atol=1e-14)


def test_float32_layers_match_vmap():
    torch.manual_seed(3)
    model = SmallCNN(1, 10, 28)
    x, y = _data((1, 28, 28), 16, n_classes=10, dtype=torch.float32)
    a = per_sample_grads(model, x, y, backend="layers")
    b = per_sample_grads(model, x, y, backend="vmap")
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("conv_method", ["grouped", "unfold"])
def test_conv_stride_padding_dilation_and_linear_extra_dims(conv_method, monkeypatch):
    monkeypatch.setitem(gradients.CONV_WEIGHT_GRAD_BY_DEVICE, "cpu", conv_method)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
            self.c2 = nn.Conv2d(3, 4, 4, padding="same", bias=False)  # even kernel: asymmetric padding
            self.c3 = nn.Conv2d(4, 2, 3, stride=2, padding="valid")
            self.mix = nn.Linear(3, 5)  # applied on (B, 2, H, 3): extra dims summed per sample
            self.head = nn.Linear(2 * 5, 3)

        def forward(self, x):
            h = torch.tanh(self.c3(torch.relu(self.c2(torch.tanh(self.c1(x))))))
            h = self.mix(h[..., :3])
            return self.head(h.mean(2).flatten(1))

    torch.manual_seed(4)
    model = Odd().double()
    x, y = _data((2, 11, 9), 5)
    model(x)  # shapes fit
    expected = loop_grads(model, x, y)
    for backend in BACKENDS:
        torch.testing.assert_close(per_sample_grads(model, x, y, backend=backend, chunk_size=2), expected, rtol=1e-10, atol=1e-12)


class Twice(nn.Module):
    """One Linear layer called twice in the forward pass (its per-sample gradient sums both uses)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.body(torch.tanh(self.body(x)))))


def test_shared_layer_called_twice_and_soft_targets():
    torch.manual_seed(5)
    model = Twice().double()
    x, y = _data((4,), 7)
    expected = loop_grads(model, x, y)
    torch.testing.assert_close(per_sample_grads(model, x, y, backend="layers"), expected, rtol=1e-10, atol=1e-12)

    soft = torch.softmax(torch.randn(7, 3, dtype=torch.float64), 1)
    head = ["head.weight", "head.bias"]
    torch.testing.assert_close(
        per_sample_grads(model, x, soft, head, backend="layers"),
        per_sample_grads(model, x, soft, head, backend="vmap"),
        rtol=1e-10,
        atol=1e-12,
    )


def test_head_not_last_op_uses_autograd_path():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(x) / 2.0

    model = Scaled().double()
    x, y = _data((4,), 6)
    torch.testing.assert_close(per_sample_grads(model, x, y, backend="layers"), loop_grads(model, x, y), rtol=1e-10, atol=1e-12)


def test_unsupported_layers_fall_back_or_raise():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    model.eval()
    x, y = _data((1, 6, 6), 5)
    assert "BatchNorm2d" in layers_unsupported_reason(model)
    assert resolve_backend(model, None, "auto") == "vmap"
    with pytest.raises(ValueError, match="layers"):
        per_sample_grads(model, x, y, backend="layers")
    torch.testing.assert_close(per_sample_grads(model, x, y, backend="auto"), loop_grads(model, x, y), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="unknown gradient backend"):
        per_sample_grads(model, x, y, backend="nope")

    class InPlace(nn.Module):  # a Linear output changed in place: the closed form cannot see it
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            h = self.body(x)
            h.mul_(2.0)
            return self.head(h)

    model = InPlace().double()
    x, y = _data((4,), 5)
    with pytest.raises(ValueError, match="in place"):
        per_sample_grads(model, x, y, backend="layers")
    torch.testing.assert_close(per_sample_grads(model, x, y, backend="auto"), loop_grads(model, x, y), rtol=1e-10, atol=1e-12)


def test_resnet18_falls_back_and_head_subset_matches_loop():
    torch.manual_seed(7)
    model = resnet18(3, 4)
    model.eval()
    with torch.no_grad():  # non-trivial running statistics, so eval-mode BatchNorm matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x, y = _data((3, 32, 32), 3, n_classes=4, dtype=torch.float32)

    assert "BatchNorm2d" in layers_unsupported_reason(model)
    assert resolve_backend(model, None, "auto") == "vmap"
    with pytest.raises(ValueError):
        resolve_backend(model, None, "layers")

    head = parameter_names(model, "last_layer")
    expected = loop_grads(model, x, y, head)
    for backend in ("auto", "vmap", "layers"):
        torch.testing.assert_close(per_sample_grads(model, x, y, head, backend=backend), expected, rtol=1e-4, atol=1e-6)

    # full parameters through the vmap fallback, first conv and head compared against the loop
    names = ["body.conv1.weight", "body.bn1.weight", "head.weight"]
    expected = loop_grads(model, x, y, names)
    torch.testing.assert_close(per_sample_grads(model, x, y, names, backend="auto"), expected, rtol=1e-4, atol=1e-5)


def test_empty_input_and_unknown_names():
    model, shape = MODELS["mlp_relu"]
    x, y = _data(shape, 0)
    assert per_sample_grads(model, x, y, backend="layers").shape == (0, n_params(model))
    with pytest.raises(ValueError, match="unknown parameter"):
        per_sample_grads(model, *_data(shape, 2), param_names=["nope.weight"])


@pytest.mark.parametrize("conv_method", ["grouped", "unfold"])
def test_conv_weight_methods_agree(conv_method, monkeypatch):
    monkeypatch.setitem(gradients.CONV_WEIGHT_GRAD_BY_DEVICE, "cpu", conv_method)
    model, shape = MODELS["cnn_28"]
    x, y = _data(shape, 5, seed=8)
    torch.testing.assert_close(per_sample_grads(model, x, y, backend="layers"), loop_grads(model, x, y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["logreg", "mlp_relu", "cnn_12"])
@pytest.mark.parametrize("subset", ["all", "last_layer"])
def test_weighted_sq_norms_match_loop(kind, backend, subset):
    model, shape = MODELS[kind]
    names = parameter_names(model, subset)
    x, y = _data(shape, 7, seed=9)
    rows = loop_grads(model, x, y, names)
    w = torch.rand(rows.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.1
    got = per_sample_grad_sq_norms(model, x, y, names, weights=w, backend=backend, chunk_size=3)
    torch.testing.assert_close(got, (rows**2 * w).sum(1), rtol=1e-10, atol=1e-14)
    plain = per_sample_grad_sq_norms(model, x, y, names, backend=backend, chunk_size=4)
    torch.testing.assert_close(plain, (rows**2).sum(1), rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="one entry per gradient column"):
        per_sample_grad_sq_norms(model, x, y, names, weights=w[:-1])


def test_weighted_sq_norms_shared_module_and_fallback():
    torch.manual_seed(10)
    model = Twice().double()
    x, y = _data((4,), 6)
    rows = loop_grads(model, x, y)
    w = torch.linspace(0.5, 2.0, rows.shape[1], dtype=torch.float64)
    torch.testing.assert_close(
        per_sample_grad_sq_norms(model, x, y, weights=w, backend="layers"), (rows**2 * w).sum(1), rtol=1e-10, atol=1e-14
    )

    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double().eval()
    x, y = _data((1, 6, 6), 4)
    rows = loop_grads(bn, x, y)
    torch.testing.assert_close(per_sample_grad_sq_norms(bn, x, y), (rows**2).sum(1), rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------------------
# Conv2d paths (issue 35): formed (grouped / unfold) or ghost, chosen per layer by a cost model; every path must agree
# with torch.func's vmap of grad to float32 rounding, for squared norms (self-influence) and for inner products
# between two sets of rows (test × train)


class _Convs(nn.Module):
    """Convolutions of every kind the closed forms handle: stride, dilation, asymmetric 'same' padding, no bias, 1×1,
    few positions after striding (where the ghost form is the cheaper one) and a Linear head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
        self.c2 = nn.Conv2d(3, 4, 4, padding="same", bias=False)
        self.c3 = nn.Conv2d(4, 6, 3, stride=2, padding="valid")
        self.c4 = nn.Conv2d(6, 5, 1)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        h = torch.tanh(self.c3(torch.relu(self.c2(torch.tanh(self.c1(x))))))
        return self.head(torch.tanh(self.c4(h)).mean((2, 3)))


def _f32_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to float32 rounding: every entry within a few ulps of the largest one."""
    scale = expected.abs().max().clamp_min(1e-30)
    assert ((got - expected).abs().max() / scale) < 2e-5, float((got - expected).abs().max() / scale)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("path", ["formed", "ghost"])
@pytest.mark.parametrize("conv_method", ["grouped", "unfold", "auto"])
def test_every_conv_path_agrees_with_vmap_for_norms_and_pairs(path, conv_method, monkeypatch):
    from influence_core.factored import Outer, pairwise_scores
    from influence_core.gradients import iter_factored_grads

    monkeypatch.setattr(gradients, "CONV_PATH_OVERRIDE", path)
    monkeypatch.setitem(gradients.CONV_WEIGHT_GRAD_BY_DEVICE, "cpu", conv_method)
    torch.manual_seed(11)
    model = _Convs().eval()
    x, y = _data((2, 11, 9), 7, dtype=torch.float32)
    xq, yq = _data((2, 11, 9), 4, seed=3, dtype=torch.float32)
    rows = per_sample_grads(model, x, y, backend="vmap")
    rows_q = per_sample_grads(model, xq, yq, backend="vmap")

    _f32_close(per_sample_grad_sq_norms(model, x, y, backend="layers", chunk_size=3), (rows.double() ** 2).sum(1).float())
    _f32_close(per_sample_grads(model, x, y, backend="layers", chunk_size=3), rows)

    queries = next(iter_factored_grads(model, xq, yq, backend="layers"))[1]
    train = next(iter_factored_grads(model, x, y, backend="layers"))[1]
    conv_blocks = [f"c{i}.weight" for i in range(1, 5)]
    assert all(isinstance(queries.blocks[n], Outer) == (path == "ghost") for n in conv_blocks)
    _f32_close(queries.dense(), rows_q)
    _f32_close(pairwise_scores(queries, train), (rows_q.double() @ rows.double().T).float())


def test_the_cost_model_forms_where_positions_are_many_and_pairs_where_few():
    """SmallCNN on 28×28 (P = 784, 196, 49): every layer formed; ResNet18 on 32×32: the stages after striding take the
    ghost form for squared norms from P = 16 and for pairs from P = 4 (P² (d_out + d_in) far below d_out · d_in)."""
    from influence_core.gradients import conv_path, conv_paths

    cnn = SmallCNN(1, 10, 28)
    plan = conv_paths(cnn, (1, 28, 28))
    assert [v["positions"] for v in plan.values()] == [784, 196, 49]
    assert all(v["norm"] == v["pair"] == "formed" for v in plan.values())

    net = resnet18(3, 10)
    names = [n for n, p in net.named_parameters() if "bn" not in n and "downsample.1" not in n]
    plan = conv_paths(net, (3, 32, 32), names)
    by_positions = {}
    for v in plan.values():
        by_positions.setdefault(v["positions"], set()).add((v["norm"], v["pair"]))
    assert by_positions == {
        256: {("formed", "formed")},
        64: {("formed", "formed")},
        16: {("ghost", "formed")},
        4: {("ghost", "ghost")},
        1: {("ghost", "ghost")},
    }
    # fewer positions never switch a layer back to forming
    conv = nn.Conv2d(256, 256, 3)
    cpu = torch.device("cpu")
    for use in ("norm", "pair"):
        paths = [conv_path(conv, p, use, cpu) for p in (1, 2, 4, 8, 16, 32, 64, 128)]
        assert paths == sorted(paths, key=lambda s: s == "formed")
    with pytest.raises(ValueError, match="use must be"):
        conv_path(conv, 4, "nope", cpu)


def test_resnet18_convolutions_mixed_paths_match_vmap():
    """ResNet18 with its convolutions and head selected (BatchNorm frozen, eval mode): the layers backend runs, mixing
    formed and ghost layers as the cost model picks, and agrees with vmap for self-influence and test × train."""
    from influence_core.factored import Outer, pairwise_scores
    from influence_core.gradients import iter_factored_grads

    torch.manual_seed(12)
    net = resnet18(3, 4).eval()
    names = [n for n, p in net.named_parameters() if "bn" not in n and "downsample.1" not in n]
    assert resolve_backend(net, names, "auto") == "layers"
    x, y = _data((3, 32, 32), 3, n_classes=4, dtype=torch.float32)
    xq, yq = _data((3, 32, 32), 2, n_classes=4, seed=5, dtype=torch.float32)
    rows = per_sample_grads(net, x, y, names, backend="vmap").double()
    rows_q = per_sample_grads(net, xq, yq, names, backend="vmap").double()
    _f32_close(per_sample_grad_sq_norms(net, x, y, names, backend="layers"), (rows**2).sum(1).float())
    queries = next(iter_factored_grads(net, xq, yq, names, backend="layers"))[1]
    train = next(iter_factored_grads(net, x, y, names, backend="layers"))[1]
    assert isinstance(train.blocks["body.layer4.1.conv2.weight"], Outer)
    assert isinstance(train.blocks["body.layer1.0.conv1.weight"], torch.Tensor)
    _f32_close(pairwise_scores(queries, train), (rows_q @ rows.T).float())


def test_passes_split_a_chunk_on_cpu_without_changing_results(monkeypatch):
    """On CPU a chunk runs in passes whose activations fit PASS_BYTES_BY_DEVICE (at least MIN_PASS_ROWS rows)."""
    from influence_core.gradients import pass_rows

    model, shape = MODELS["cnn_28"]
    x, y = _data(shape, 70, seed=13)
    whole = per_sample_grads(model, x, y, backend="layers", chunk_size=70)
    monkeypatch.setitem(gradients.PASS_BYTES_BY_DEVICE, "cpu", 1)
    assert pass_rows(model, shape) == gradients.MIN_PASS_ROWS
    starts = [s for s, _ in iter_per_sample_grads(model, x, y, chunk_size=70, backend="layers")]
    assert starts == [0, 32, 64]
    torch.testing.assert_close(per_sample_grads(model, x, y, backend="layers", chunk_size=70), whole, rtol=1e-12, atol=1e-14)
    monkeypatch.setitem(gradients.PASS_BYTES_BY_DEVICE, "cpu", None)
    assert pass_rows(model, shape) is None
    assert [s for s, _ in iter_per_sample_grads(model, x, y, chunk_size=70, backend="layers")] == [0]
