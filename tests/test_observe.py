"""Observing any model: layers read by forward hooks, the workflow's rows for any family."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import featscope
from featscope.architectures import model_spec
from featscope.capture import LayerMap, features, layer_map
from featscope.models import build_model
from featscope.observe import observe_families
from featscope.tasks import make_dataset
from featscope.training import train_one

BUILT = [
    ({"name": "mlp", "width": 6, "depth": 3}, lambda: torch.randn(9, 4), 4, 2),
    ({"name": "mlp", "width": 6, "depth": 2, "activation": "gelu"}, lambda: torch.randn(9, 2, 2), 4, 2),
    ({"name": "modnet", "width": 6}, lambda: torch.randint(0, 5, (9, 2)), 2, 5),
    ({"name": "onehot", "width": 6}, lambda: torch.randint(0, 5, (9, 2)), 2, 5),
    ({"name": "cnn", "width": 6}, lambda: torch.randn(3, 1, 8, 8), 1, 4),
    ({"name": "resnet18"}, lambda: torch.randn(2, 3, 8, 8), 3, 4),
]


@pytest.mark.parametrize(
    "block, make_x, in_dim, out_dim", BUILT, ids=lambda v: v.get("name") if isinstance(v, dict) else ""
)
def test_hooks_on_the_registered_mapping_give_forward_features(block, make_x, in_dim, out_dim):
    """Each built-in's registered layer map, read by hooks, is its forward_features, exactly."""
    torch.manual_seed(0)
    model = build_model(block, in_dim, out_dim).eval()
    x = make_x()
    with torch.no_grad():
        want_out, want = model.forward_features(x)
        got_out, got = features(model, x, layer_map(model, block))
    assert torch.equal(got_out, want_out)
    assert got.readout_input is None  # the readout reads the last layer: no extra layer
    assert list(got.post) == list(want.post) == model_spec(block["name"]).layer_names(block)
    assert torch.equal(got.inputs, want.inputs)
    for layer in want.post:
        assert torch.equal(got.pre[layer], want.pre[layer]) and torch.equal(got.post[layer], want.post[layer])


def _trained_mlp(activation="relu"):
    task = {"name": "sin2", "d": 3, "f": 2, "n_train": 64, "n_test": 0, "seed": 0}
    cfg = {
        "task": task,
        "model": {"name": "mlp", "width": 12, "depth": 2, "activation": activation, "bias": True},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 30, "loss": "mse"},
        "schedule": {"every": 10},
        "seed": 0,
    }
    data = make_dataset(task)
    return cfg, data, train_one("r", cfg, data, progress=False).checkpoints


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_observe_gives_the_workflow_rows_of_a_built_in(activation):
    """`featscope.observe_model` on a built-in MLP and its checkpoints, with its registered mapping,
    gives the workflow's rows (relu: its stacked fast path; gelu: the hook path) to float32
    rounding of the batched products."""
    cfg, data, bundle = _trained_mlp(activation)
    families = {"linreg": {}, "spectral": {"top": 4}, "weights": {}, "gradients": {}}
    if activation == "relu":
        families["nonlinearity"] = {}
    want = pd.concat(observe_families("r", families, bundle, data).values(), ignore_index=True)
    model = build_model(cfg["model"], 3, 1)
    states = [{k: v[i] for k, v in bundle["params"].items()} for i in range(len(bundle["steps"]))]
    got = featscope.observe_model(
        model,
        data["x_train"],
        layers=model_spec("mlp").layer_map(cfg["model"]),
        readout="readout",
        targets=data["y_train"],
        families=families,
        checkpoints=states,
        steps=bundle["steps"].numpy(),
        run="r",
    )
    keys = ["run", "step", "observable", "layer", "k"]
    pd.testing.assert_frame_equal(got[keys], want[keys])
    assert np.allclose(got.value, want.value, rtol=2e-4, atol=1e-6, equal_nan=True)


class _Custom(nn.Module):
    """Not a featscope model: a GELU layer, then a norm the readout reads."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 8), nn.GELU())
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.norm(self.net(x)))


def test_any_module_linreg_weights_and_the_readouts_input():
    torch.manual_seed(1)
    model = _Custom()
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    rows = featscope.observe_model(
        model, x, layers={"h1": "net.1"}, readout="head", targets=y, families=["linreg", "spectral", "weights"]
    )
    # linreg of y on h1 = gelu(W x + b): brute force by numpy least squares
    with torch.no_grad():
        h = model.net(torch.from_numpy(x)).double().numpy()
    a = np.hstack([h, np.ones((50, 1))])
    resid = y - a @ np.linalg.lstsq(a, y, rcond=None)[0]
    got = rows.query("observable == 'linreg_loss' and layer == 'h1'").value.item()
    assert got == pytest.approx(np.mean(resid**2), rel=1e-6)
    # spectral reads the readout's input (after the norm), not h1
    assert set(rows.query("observable == 'eigenvalue'").layer) == {"penultimate"}
    with torch.no_grad():
        feats = model.norm(model.net(torch.from_numpy(x))).double()
    top = rows.query("observable == 'eigenvalue'").sort_values("k").value.to_numpy()
    kernel = torch.linalg.eigvalsh(feats @ feats.T / 50).flip(0).numpy()[: len(top)]
    assert np.allclose(top, kernel, rtol=1e-5, atol=1e-8)
    # weights: the Linear before h1 is h1, the head is out; the norm keeps its path
    layers = set(rows.query("observable == 'weight_norm'").layer)
    assert layers == {"h1", "out"} and "" not in set(rows.layer.dropna())


def test_class_labels_need_classes():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
    x, labels = torch.randn(20, 3), torch.randint(0, 3, (20,))
    kwargs = dict(layers={"h1": "1"}, readout="2", families=["spectral"])
    with pytest.raises(ValueError, match="pass classes="):
        featscope.observe_model(model, x, targets=labels, **kwargs)
    with pytest.raises(ValueError, match="classes=5, but the model has 3 outputs"):
        featscope.observe_model(model, x, targets=labels, classes=5, **kwargs)
    with pytest.raises(ValueError, match="no module 'body'"):
        featscope.observe_model(model, x, targets=labels, classes=3, layers={"h1": "body"}, readout="2", families=[])
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        featscope.observe_model(model, x.tolist(), targets=labels, classes=3, **kwargs)
    by_labels = featscope.observe_model(model, x, targets=labels, classes=3, **kwargs)
    by_one_hot = featscope.observe_model(model, x, targets=nn.functional.one_hot(labels, 3).float(), **kwargs)
    pd.testing.assert_frame_equal(by_labels, by_one_hot)


def test_layer_map_refuses_reserved_and_empty_names():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="reserved"):
        LayerMap(model, {"x": "1"}, "2")
    with pytest.raises(ValueError, match="non-empty"):
        LayerMap(model, {"": "1"}, "2")


def test_neuron_counts_are_refused_for_smooth_activations():
    from featscope.observables.nonlinearity import nonlinear_neurons

    pre = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    assert int(nonlinear_neurons(pre)) == int(nonlinear_neurons(torch.from_numpy(pre))) == 5  # numpy or torch
    assert int(featscope.dead_neurons(np.abs(pre) * -1)) == 5 and int(featscope.linear_neurons(np.abs(pre))) == 5
    with pytest.raises(ValueError, match="defined for ReLU layers, not 'gelu'"):
        nonlinear_neurons(pre, activation="gelu")
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        nonlinear_neurons(pre.tolist())
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 1))
    x, y = torch.randn(20, 3), torch.randn(20, 1)
    with pytest.raises(ValueError, match=r"ReLU layers \(layer h1\), not 'gelu'"):
        featscope.observe_model(model, x, layers={"h1": "1"}, readout="2", targets=y, families=["nonlinearity"])
    relu = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    rows = featscope.observe_model(relu, x, layers={"h1": "1"}, readout="2", targets=y, families=["nonlinearity"])
    with torch.no_grad():
        want = int(nonlinear_neurons(relu[0](x)))
    assert rows.query("observable == 'nonlinear_neurons'").value.item() == want


def test_class_labels_are_refused_by_linreg_and_spectral_without_classes():
    feats = torch.randn(40, 6)
    labels = torch.randint(0, 4, (40,))
    one_hot = nn.functional.one_hot(labels, 4).double()
    with pytest.raises(ValueError, match="pass classes="):
        featscope.linreg_loss(feats, labels)
    with pytest.raises(ValueError, match="pass classes="):
        featscope.spectral(feats, labels.numpy(), one_hot)
    assert float(featscope.linreg_loss(feats, labels, classes=4)) == float(featscope.linreg_loss(feats, one_hot))
    pd.testing.assert_frame_equal(
        featscope.spectral(feats, labels, one_hot, classes=4), featscope.spectral(feats, one_hot, one_hot)
    )
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        featscope.linreg_loss(feats.tolist(), one_hot)


def test_every_public_name_has_a_docstring():
    import inspect

    for name in featscope.__all__:
        doc = inspect.getdoc(getattr(featscope, name))
        assert doc and len(doc) > 20, name


class _Shifted(nn.Module):
    """A plugin-style model: a learned shift of the inputs (a parameter of the model itself),
    a GELU layer and a readout."""

    def __init__(self, in_dim, out_dim, width):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(1, in_dim))
        self.up = nn.Linear(in_dim, width)
        self.act = nn.GELU()
        self.out_proj = nn.Linear(width, out_dim)

    def forward(self, x):
        return self.out_proj(self.act(self.up(x + self.shift)))


def test_a_registered_plugin_model_trains_packed_and_is_observed_on_its_named_layers():
    from featscope.packed import train_packed
    from featscope.registry import MODELS, register_model

    @register_model("shifted_test", layers={"h1": "act"}, readout="out_proj")
    def shifted(in_dim, out_dim, width=8):
        """A test model."""
        return _Shifted(in_dim, out_dim, width)

    try:
        task = {"name": "sin2", "d": 3, "f": 2, "n_train": 48, "n_test": 0, "seed": 0}
        cfg = {
            "task": task,
            "model": {"name": "shifted_test"},
            "optim": {"name": "adam", "lr": 0.01},
            "train": {"steps": 20, "loss": "mse"},
            "schedule": {"every": 10},
        }
        data = make_dataset(task)
        results = train_packed([("a", {**cfg, "seed": 0}), ("b", {**cfg, "seed": 1})], data)
        alone = train_one("a", {**cfg, "seed": 0}, data, progress=False)
        for name, stack in alone.checkpoints["params"].items():
            assert torch.allclose(results[0].checkpoints["params"][name], stack, rtol=1e-4, atol=1e-5), name
        rows = observe_families(
            "a", {"linreg": {}, "spectral": {"top": 3}, "weights": {}}, results[0].checkpoints, data
        )
        assert set(rows["linreg"].layer) == {"x", "h1"} and set(rows["spectral"].layer) == {"h1"}
        assert set(rows["weights"].layer.dropna()) == {"h1", "out", "shift"}  # never ''
    finally:
        MODELS.pop("shifted_test")
