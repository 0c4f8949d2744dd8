"""Initialisation schemes (`model.init`, `model.init_scale`) against their closed-form statistics."""

import math
import pathlib

import pytest
import torch
import yaml
from torch import nn

import featscope.config as fsconfig
from featscope.configload import fill_defaults
from featscope.init import apply_init, fan_in
from featscope.models import build_model
from featscope.observables import applicability, parameters
from featscope.packed import train_packed
from featscope.tasks import make_dataset
from featscope.training import train_one


def moments(w: torch.Tensor) -> tuple[float, float, float]:
    """Mean, variance and excess kurtosis of all entries, in float64."""
    w = w.detach().double().flatten()
    mean, var = w.mean().item(), w.var().item()
    return mean, var, (((w - w.mean()) ** 4).mean() / var**2).item() - 3.0


# 2.56e6 entries: the sample variance's relative standard error is √(2/n) ≈ 1e-3 (normal),
# the excess kurtosis' ≈ √(24/n) ≈ 3e-3, so 1e-2 and 3e-2 bounds are ten standard errors.
@pytest.mark.parametrize(
    "layer",
    [lambda: nn.Linear(3200, 800), lambda: nn.Conv2d(64, 4444, 3)],
    ids=["linear", "conv"],
)
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_gaussian_is_he_normal_times_scale(layer, scale):
    torch.manual_seed(0)
    m = apply_init(layer(), "gaussian", scale)
    n = fan_in(m)
    mean, var, kurt = moments(m.weight)
    assert var == pytest.approx(scale**2 * 2.0 / n, rel=1e-2)
    assert abs(mean) < 10 * math.sqrt(var / m.weight.numel())
    assert abs(kurt) < 3e-2  # normal
    assert torch.count_nonzero(m.bias) == 0


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_torch_default_is_uniform_with_bound_one_over_root_fan_in(scale):
    torch.manual_seed(0)
    m = apply_init(nn.Linear(3200, 800), "torch", scale)
    bound = scale / math.sqrt(3200)
    _, var, kurt = moments(m.weight)
    assert var == pytest.approx(bound**2 / 3, rel=1e-2)  # U(-b, b): b²/3
    assert kurt == pytest.approx(-1.2, abs=3e-2)  # uniform: -6/5
    assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
    assert m.bias.abs().max() > 0.9 * bound  # 800 uniform draws reach near the bound


def test_torch_at_scale_one_draws_nothing_and_changes_nothing():
    torch.manual_seed(3)
    m = nn.Linear(5, 4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    state = torch.get_rng_state()
    apply_init(m, "torch", 1.0)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_torch_scale_multiplies_the_default_draw_of_the_same_seed():
    cfg = {"name": "mlp", "width": 16, "depth": 2}
    torch.manual_seed(7)
    ref = build_model(cfg, 10, 1)
    torch.manual_seed(7)
    small = build_model({**cfg, "init": "torch", "init_scale": 0.1}, 10, 1)
    for (name, a), (_, b) in zip(ref.named_parameters(), small.named_parameters()):
        assert torch.allclose(b, 0.1 * a, rtol=0, atol=1e-7), name


def test_every_layer_of_a_cnn_is_initialised_and_batch_norm_is_left_alone():
    torch.manual_seed(0)
    model = build_model({"name": "cnn", "width": 32, "batch_norm": True, "init": "gaussian"}, 1, 10)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert len(layers) == 4
    for m in layers:
        assert torch.count_nonzero(m.bias) == 0
        assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in(m)), rel=0.25)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.count_nonzero(m.bias) == 0


@pytest.mark.parametrize(("scheme", "scale", "message"), [("xavier", 1.0, "xavier"), ("torch", 0.0, "init_scale")])
def test_bad_scheme_or_scale_is_named(scheme, scale, message):
    with pytest.raises(ValueError, match=message):
        apply_init(nn.Linear(2, 2), scheme, scale)


SIN2 = {
    "task": {"name": "sin2", "d": 10, "f": 10, "n_train": 100, "seed": 0},
    "model": {"name": "mlp", "width": 24, "depth": 2, "activation": "relu"},
    "optim": {"name": "adam", "lr": 0.001},
    "train": {"steps": 20, "loss": "mse"},
    "schedule": {"every": 10},
}


@pytest.mark.parametrize(("scheme", "scale"), [("gaussian", 1.0), ("torch", 0.25)])
def test_packed_engine_starts_from_the_same_initialisation(scheme, scale):
    """The packed engine builds its models through build_model, so the init reaches it: its step-0
    checkpoint equals the one-run engine's, and both differ from the default initialisation."""
    model = {**SIN2["model"], "init": scheme, "init_scale": scale}
    runs = [(f"run-{s}", {**SIN2, "model": model, "seed": s}) for s in (0, 1)]
    data = make_dataset(SIN2["task"])
    packed = train_packed(runs, data, progress=False)
    for (run_id, cfg), got in zip(runs, packed):
        alone = train_one(run_id, cfg, data, progress=False)
        default = train_one(run_id, {**cfg, "model": SIN2["model"]}, data, progress=False)
        w0 = got.checkpoints["params"]["hidden.0.weight"][0]
        assert torch.equal(w0, alone.checkpoints["params"]["hidden.0.weight"][0])
        assert not torch.allclose(w0, default.checkpoints["params"]["hidden.0.weight"][0])
        torch.manual_seed(cfg["seed"])
        built = build_model(model, 10, 1)
        assert torch.equal(w0, built.hidden[0].weight.detach())


def _check(model: dict, task: dict | None = None, loss: str = "mse"):
    """The config checks of workflow/rules/common.smk on a one-run study."""
    path = pathlib.Path(__file__).parent.parent / "workflow" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(path.read_text())
    train = {**SIN2["train"], "loss": loss}
    study = {**SIN2, "task": task or SIN2["task"], "model": model, "train": train, "seeds": [0]}
    config = {"studies": {"s": study}}
    fsconfig.validate_schema(config, schema)
    fill_defaults(config, fsconfig.complete_schema(schema))  # the registries' schema: the task keys are theirs
    return fsconfig.check(config, schema, applicability(), parameters())


def test_schema_takes_init_and_names_a_bad_one():
    runs = _check({**SIN2["model"], "init": "gaussian", "init_scale": 0.5})
    assert runs["s"][0].config["model"]["init"] == "gaussian"
    assert "init" not in _check(SIN2["model"])["s"][0].config["model"]  # no default: old run ids stay
    for bad, key in (({"init": "xavier"}, "init"), ({"init_scale": 0}, "init_scale")):
        with pytest.raises(fsconfig.ConfigError, match=key):
            _check({**SIN2["model"], **bad})


def test_schema_takes_the_digits_task():
    task = {"name": "digits", "n_train": 100, "n_test": 50}
    runs = _check({"name": "cnn", "width": 8}, task, loss="cross_entropy")
    assert runs["s"][0].config["task"] == {**task, "random_labels": False, "seed": 0}
    with pytest.raises(fsconfig.ConfigError, match="n_val"):
        _check({"name": "cnn", "width": 8}, {**task, "n_val": 3}, loss="cross_entropy")
