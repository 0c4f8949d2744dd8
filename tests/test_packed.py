"""Packed training against its twin: each run trained alone with `train_one`."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from featscope import loop, packed
from featscope.packed import pack_key, train_packed
from featscope.tasks import make_dataset
from featscope.training import loss_fn, per_run_loss, train_one

SIN2 = {
    "task": {"name": "sin2", "d": 10, "f": 10, "n_train": 200, "n_test": 50, "seed": 0},
    "model": {"name": "mlp", "width": 32, "depth": 2, "activation": "relu"},
    "optim": {"name": "adam", "lr": 0.001, "warmup_steps": 10},
    "train": {"steps": 100, "loss": "mse", "eval_every": 7},
    "schedule": {"every": 20},
}
MODADD = {
    "task": {"name": "modadd", "M": 11, "train_fraction": 0.5, "seed": 0},
    "model": {"name": "modnet", "width": 24},
    "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 1.0, "batch_size": 16},
    "train": {"steps": 60, "loss": "zero_mean_mse", "eval_every": 5},
    "schedule": {"every": 10},
}
READOUT = {
    **SIN2,
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "train": "readout"},
    "train": {"steps": 50, "loss": "mse"},
}


def assert_same_as_alone(runs, data, got, rtol=1e-4, atol=1e-5):
    # Tolerance: float32 rounding of batched vs single matrix products, grown over ~100
    # optimiser steps; the metrics' row structure must match exactly.
    for (run_id, cfg), result in zip(runs, got):
        alone = train_one(run_id, cfg, data, progress=False)
        assert torch.equal(result.checkpoints["steps"], alone.checkpoints["steps"])
        assert result.checkpoints["params"].keys() == alone.checkpoints["params"].keys()
        for name, stack in alone.checkpoints["params"].items():
            assert torch.allclose(result.checkpoints["params"][name], stack, rtol=rtol, atol=atol), name
        cols = ["run", "step", "epoch", "split", "lr"]
        pd.testing.assert_frame_equal(result.metrics[cols], alone.metrics[cols])
        assert np.allclose(result.metrics.loss, alone.metrics.loss, rtol=rtol, atol=atol, equal_nan=True)
        assert np.allclose(result.metrics.acc, alone.metrics.acc, equal_nan=True, atol=0.02)
        for key in ("status", "steps_done", "diverged_at", "outputs"):
            assert result.info[key] == alone.info[key], key


# Per run: seed, then values of the optimiser that may differ within a pack.
VALUES = [(0, {}), (1, {"lr": 0.004}), (2, {"weight_decay": 0.1, "warmup_steps": 3})]


@pytest.mark.parametrize("cfg", [SIN2, MODADD, READOUT], ids=["adam+test", "adamw+minibatch+CE", "sgd+readout"])
def test_packed_matches_training_alone_to_float32_rounding(cfg):
    data = make_dataset(cfg["task"])
    runs = [(f"run-{s}", {**cfg, "seed": s, "optim": {**cfg["optim"], **values}}) for s, values in VALUES]
    assert_same_as_alone(runs, data, train_packed(runs, data))


@pytest.mark.parametrize("name", ["mse", "cross_entropy", "zero_mean_mse"])
@pytest.mark.parametrize("shape", [(8, 500, 1), (3, 37, 10), (5, 64, 71)])
def test_per_run_losses_equal_vmap_of_the_loss_bit_for_bit(name, shape):
    """The pack's losses and their gradients are those of vmap over `loss_fn` (the
    definition), exactly: a pack's numbers must not depend on how its loss was batched."""
    torch.manual_seed(len(name) + shape[1])
    out = torch.randn(shape) * 3
    if name == "mse":
        target = torch.randn(shape)
    else:
        target = torch.randint(0, shape[2], shape[:2])
    kind = "regression" if name == "mse" else "classification"
    weights = torch.rand(shape[0])
    grads = []
    for criterion in (torch.func.vmap(loss_fn(kind, name)), per_run_loss(kind, name)):
        o = out.clone().requires_grad_()
        losses = criterion(o, target)
        (losses * weights).sum().backward()
        grads.append((losses.detach(), o.grad))
    assert grads[1][0].shape == (shape[0],)
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        per_run_loss(kind, "hinge")


def test_each_run_diverges_on_its_own():
    cfg = {**SIN2, "optim": {"name": "sgd", "lr": 3.0}, "train": {"steps": 40, "loss": "mse"}}
    data = make_dataset(cfg["task"])
    runs = [(f"seed-{s}", dict(cfg, seed=s)) for s in (0, 1, 2, 3)]
    got = train_packed(runs, data)
    assert {r.info["status"] for r in got} == {"diverged"}
    assert len({r.info["diverged_at"] for r in got}) > 1  # the pack did not stop at the first
    # The last checkpoint holds weights grown 1e5-fold in a few steps; rounding grows with them.
    assert_same_as_alone(runs, data, got, rtol=1e-2, atol=1e-3)


def test_killed_pack_resumes_to_the_same_result(tmp_path, monkeypatch):
    data = make_dataset(MODADD["task"])
    runs = [(f"seed-{s}", dict(MODADD, seed=s)) for s in (0, 1)]
    whole = train_packed(runs, data)
    state = tmp_path / "pack.pt"
    real, calls = loop._accuracies, {"n": 0}

    def killed_at_step_37(*args):
        calls["n"] += 1
        if calls["n"] > 37:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop, "_accuracies", killed_at_step_37)
    with pytest.raises(KeyboardInterrupt):
        train_packed(runs, data, resume_path=state, resume_every=0.0)
    assert state.exists()
    monkeypatch.setattr(loop, "_accuracies", real)
    resumed = train_packed(runs, data, resume_path=state, resume_every=0.0)
    for a, b in zip(whole, resumed):
        for name, stack in a.checkpoints["params"].items():
            assert torch.equal(b.checkpoints["params"][name], stack), name
        pd.testing.assert_frame_equal(a.metrics, b.metrics)


def test_pack_key_groups_runs_that_differ_only_in_seed_and_optimiser_values():
    assert pack_key(dict(SIN2, seed=0)) == pack_key(dict(SIN2, seed=5))
    assert pack_key(dict(SIN2, seed=0)) == pack_key({**SIN2, "seed": 1, "optim": {"name": "adam", "lr": 0.1}})
    assert pack_key(dict(SIN2, seed=0)) != pack_key({**SIN2, "seed": 0, "optim": {"name": "sgd", "lr": 0.001}})
    assert pack_key(dict(SIN2, seed=0)) != pack_key({**SIN2, "seed": 0, "model": {**SIN2["model"], "width": 8}})
    # Without a stacked form a model still packs (through torch.func); batch norm does not.
    assert pack_key({**SIN2, "model": {"name": "cnn", "width": 8}, "seed": 0}) is not None
    assert pack_key({**SIN2, "model": {"name": "cnn", "width": 8, "batch_norm": True}, "seed": 0}) is None


def test_packing_refuses_runs_that_differ_beyond_seed_and_values():
    data = make_dataset(SIN2["task"])
    other = dict(SIN2, seed=1, train=dict(SIN2["train"], steps=50))
    with pytest.raises(ValueError, match="only in their seed"):
        train_packed([("a", dict(SIN2, seed=0)), ("b", other)], data)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def torch_threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("cfg", [SIN2, MODADD], ids=["full-batch", "minibatch"])
def test_a_runs_numbers_do_not_depend_on_its_pack(cfg, torch_threads):
    # On one thread a lone run is a pack of one; on two it trains beside a copy of itself.
    data = make_dataset(cfg["task"])
    runs = [
        (f"run-{s}", {**cfg, "seed": s, "optim": {**cfg["optim"], **values}})
        for s, values in VALUES + [(3, {"lr": 0.01}), (4, {})]
    ]
    in_pack = train_packed(runs, data)
    for i in (0, 3):
        for result in (packed.train_alone_packed(*runs[i], data), train_packed([runs[i], runs[1]], data)[0]):
            for name, stack in in_pack[i].checkpoints["params"].items():
                assert torch.equal(result.checkpoints["params"][name], stack), name
            pd.testing.assert_frame_equal(result.metrics, in_pack[i].metrics)


def test_pack_killed_between_checkpoint_and_state_resumes_identically(tmp_path, monkeypatch):
    """Checkpoints go to per-run files as they are taken; a pack killed after writing some
    that its last saved state does not know of drops them on resume, and a state whose
    files are gone is not resumed at all."""
    data = make_dataset(SIN2["task"])
    runs = [(f"seed-{s}", dict(SIN2, seed=s, checkpoint_dtype="bfloat16")) for s in (0, 1)]
    whole = train_packed(runs, data)
    state = tmp_path / "pack.pt"
    real, calls = packed._Spill.append, {"n": 0}

    def killed_after_fifth_checkpoint(self, i, params):
        real(self, i, params)
        calls["n"] += 1
        if calls["n"] == 2 * 5:  # both runs' fifth checkpoint written
            raise KeyboardInterrupt

    monkeypatch.setattr(packed._Spill, "append", killed_after_fifth_checkpoint)
    with pytest.raises(KeyboardInterrupt):  # the state is saved before each step's checkpoint
        train_packed(runs, data, resume_path=state, resume_every=0.0)
    monkeypatch.setattr(packed._Spill, "append", real)
    spill = state.with_suffix(".checkpoints")
    assert [len(s) for s in torch.load(state, weights_only=False)["saved_steps"]] == [4, 4]
    record = sum(v[0].numel() * 2 for v in whole[0].checkpoints["params"].values())  # bfloat16
    assert (spill / "run-0.bin").stat().st_size == 5 * record  # one more than the state knows of
    resumed = train_packed(runs, data, resume_path=state, resume_every=0.0)
    assert not spill.exists()  # removed once the pack is done
    for a, b in zip(whole, resumed):
        assert torch.equal(a.checkpoints["steps"], b.checkpoints["steps"])
        for name, stack in a.checkpoints["params"].items():
            assert stack.dtype == torch.bfloat16
            assert torch.equal(b.checkpoints["params"][name], stack), name
    # A state without its checkpoint files starts afresh, to the same result.
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(packed._Spill, "append", killed_after_fifth_checkpoint)
        calls["n"] = 0
        train_packed(runs, data, resume_path=state, resume_every=0.0)
    monkeypatch.setattr(packed._Spill, "append", real)
    shutil.rmtree(spill)
    again = train_packed(runs, data, resume_path=state, resume_every=0.0)
    for a, b in zip(whole, again):
        for name, stack in a.checkpoints["params"].items():
            assert torch.equal(b.checkpoints["params"][name], stack), name


def test_packed_results_come_one_at_a_time(monkeypatch):
    """The workflow writes each run before the next run's checkpoints are read back."""
    data = make_dataset(SIN2["task"])
    runs = [(f"seed-{s}", dict(SIN2, seed=s)) for s in (0, 1, 2)]
    real, reads = packed._Spill.read, []
    monkeypatch.setattr(packed._Spill, "read", lambda self, i, count: reads.append(i) or real(self, i, count))
    results = packed.iter_train_packed(runs, data)
    assert next(results).run_id == "seed-0" and reads == [0]
    assert [r.run_id for r in results] == ["seed-1", "seed-2"] and reads == [0, 1, 2]


def test_stacked_forward_gives_a_plain_networks_loss_and_gradients():
    # With autograd (the gradients family), the stacked forward must be a plain torch.relu
    # network's; without (evaluation), its activations are overwritten in place.
    from featscope.stacked import stacked_features, stacked_forward

    torch.manual_seed(0)
    shapes = {
        "hidden.0.weight": (3, 7, 5),
        "hidden.0.bias": (3, 7),
        "hidden.1.weight": (3, 6, 7),
        "hidden.1.bias": (3, 6),
        "readout.weight": (3, 1, 6),
        "readout.bias": (3, 1),
    }
    base = {k: torch.randn(s, dtype=torch.float64) for k, s in shapes.items()}
    x, y = torch.randn(11, 5, dtype=torch.float64), torch.randn(3, 11, 1, dtype=torch.float64)

    def grads(forward):
        params = {k: v.clone().requires_grad_() for k, v in base.items()}
        loss = ((forward(params) - y) ** 2).sum()
        return loss.detach(), torch.autograd.grad(loss, list(params.values()))

    def reference(p):
        h = x.expand(3, -1, -1)
        for layer in range(2):
            h = torch.relu(h @ p[f"hidden.{layer}.weight"].mT + p[f"hidden.{layer}.bias"].unsqueeze(1))
        return h @ p["readout.weight"].mT + p["readout.bias"].unsqueeze(1)

    cfg = {"name": "mlp", "activation": "relu"}
    want_loss, want = grads(reference)
    for forward in (
        lambda p: stacked_forward(cfg, p, x, shared=True),
        lambda p: stacked_features(cfg, p, x, shared=True)[0],
    ):
        loss, got = grads(forward)
        assert torch.allclose(loss, want_loss, rtol=1e-12)
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(stacked_forward(cfg, base, x, shared=True), reference(base), rtol=1e-12)


@pytest.mark.parametrize("name, betas", [("adam", None), ("adamw", None), ("sgd", None), ("adamw", [0.9, 0.98])])
def test_batched_optimizer_is_train_ones_optimiser_run_by_run_bit_for_bit(name, betas):
    """Per-run values (lr, weight decay, momentum, warm-up) over stacked tensors, against
    ``torch.optim``'s fused optimiser with a ``LambdaLR`` linear warm-up on each run's
    tensors alone (what `train_one` used before both engines shared the optimiser);
    `optim.betas` reaches both."""
    from featscope.batched_optim import BatchedOptimizer

    def _optimizer(cfg, params):
        kw = {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"], "fused": True}
        if cfg["name"] == "sgd":
            return torch.optim.SGD(params, momentum=cfg["momentum"], **kw)
        adam = torch.optim.Adam if cfg["name"] == "adam" else torch.optim.AdamW
        return adam(params, betas=tuple(cfg.get("betas", (0.9, 0.999))), **kw)

    def _warmup(steps):
        return lambda t: min(1.0, (t + 1) / steps) if steps > 0 else 1.0

    optims = [
        {"name": name, "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "warmup_steps": 0},
        {"name": name, "lr": 3e-2, "weight_decay": 0.1, "momentum": 0.5, "warmup_steps": 4},
        {"name": name, "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.0, "warmup_steps": 0},
    ]
    if betas is not None:
        optims = [{**o, "betas": betas} for o in optims]
    gen = torch.Generator().manual_seed(0)
    stacked = [
        torch.randn(3, 7, 5, generator=gen),
        torch.randn(3, 7, generator=gen),
        torch.randn(3, 1, 7, generator=gen),
    ]
    alone = [[p[i].clone() for p in stacked] for i in range(3)]
    batched = BatchedOptimizer(stacked, optims)
    twins = [_optimizer(o, ps) for o, ps in zip(optims, alone)]
    warmups = [torch.optim.lr_scheduler.LambdaLR(t, _warmup(o["warmup_steps"])) for t, o in zip(twins, optims)]
    for _ in range(12):
        grads = [
            torch.randn(3, 5, 7, generator=gen).mT,
            torch.randn(3, 7, generator=gen),
            torch.randn(3, 1, 7, generator=gen),
        ]  # the first not contiguous
        for p, g in zip(stacked, grads):
            p.grad = g
        batched.step()
        for i, (twin, warmup) in enumerate(zip(twins, warmups)):
            for p, g in zip(alone[i], grads):
                p.grad = g[i].contiguous()
            twin.step()
            warmup.step()
    for i in range(3):
        for p, q in zip(stacked, alone[i]):
            assert torch.equal(p[i], q)
    if betas is not None:
        assert twins[0].param_groups[0]["betas"] == tuple(betas) == batched.betas


TWIN_MODELS = {
    "mlp-relu": {"name": "mlp", "width": 7, "depth": 2, "activation": "relu"},
    "mlp-tanh": {"name": "mlp", "width": 6, "depth": 3, "activation": "tanh"},
    "modnet": {"name": "modnet", "width": 5},
    "onehot-square": {"name": "onehot", "width": 9, "activation": "square", "bias": False},
}


@pytest.mark.parametrize("readout_only", [False, True], ids=["all", "readout"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "own-batches"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "zero_mean_mse"])
@pytest.mark.parametrize("model", list(TWIN_MODELS))
def test_hand_written_training_pass_gives_each_models_autograd_gradients(model, loss, shared, readout_only):
    """`TrainingPass` + `per_run_loss_and_gradient` against its brute-force twin: each run
    as its own `nn.Module`, its task loss and autograd (float64, so only the order of sums
    differs)."""
    from torch.func import stack_module_state

    from featscope.models import build_model
    from featscope.stacked import TrainingPass
    from featscope.training import per_run_loss_and_gradient

    cfg, runs, n, classes = TWIN_MODELS[model], 3, 13, 5
    gen = torch.Generator().manual_seed(len(model) + len(loss))
    if cfg["name"] == "mlp":
        x_all = torch.randn(runs, n, 4, generator=gen, dtype=torch.float64)
    else:
        x_all = torch.randint(0, classes, (runs, n, 2), generator=gen)
    kind = "regression" if loss == "mse" else "classification"
    y_all = (
        torch.randn(runs, n, classes, generator=gen, dtype=torch.float64)
        if kind == "regression"
        else torch.randint(0, classes, (runs, n), generator=gen)
    )
    x = x_all[0] if shared else x_all
    y = y_all[0].expand(runs, *y_all.shape[1:]) if shared else y_all
    models = []
    for seed in range(runs):
        torch.manual_seed(seed)
        models.append(build_model(cfg, 4, classes).double())
    trains = lambda name: not readout_only or name.startswith("readout.")  # noqa: E731
    params, _ = stack_module_state(models)
    for name, p in params.items():
        p.requires_grad_(trains(name))

    forward = TrainingPass(cfg, params, x, shared)
    losses, grad_out = per_run_loss_and_gradient(kind, loss)(forward.output, y)
    forward.backward(grad_out)

    for i, net in enumerate(models):
        out = net(x if shared else x[i])
        want = loss_fn(kind, loss)(out, y[i])
        assert torch.allclose(forward.output[i], out.detach(), rtol=1e-12, atol=1e-13)
        assert torch.allclose(losses[i], want.detach(), rtol=1e-12)
        want.backward()
        for name, p in net.named_parameters():
            got = params[name].grad
            if not trains(name):
                assert got is None, name
                continue
            assert torch.allclose(got[i], p.grad, rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("name", ["mse", "cross_entropy", "zero_mean_mse"])
def test_loss_gradients_match_autograds_in_float32(name):
    """The pack trains in float32: the written-out loss gradients stay within a few
    float32 roundings of autograd's through `per_run_loss` (mse's are the same operations,
    so equal; measured: 1 and 4 roundings of the largest entry for the other two)."""
    from featscope.training import per_run_loss_and_gradient

    shape = (4, 50, 7)
    gen = torch.Generator().manual_seed(3)
    out = torch.randn(shape, generator=gen) * 3
    kind = "regression" if name == "mse" else "classification"
    target = torch.randn(shape, generator=gen) if name == "mse" else torch.randint(0, 7, shape[:2], generator=gen)
    o = out.clone().requires_grad_()
    want_losses = per_run_loss(kind, name)(o, target)
    want_losses.sum().backward()
    losses, grad = per_run_loss_and_gradient(kind, name)(out.clone(), target)
    assert torch.equal(losses, want_losses.detach())
    if name == "mse":
        assert torch.equal(grad, o.grad)
    else:  # softmax's exp and the label's term, or autograd re-centring: rounding apart
        ulp = torch.finfo(torch.float32).eps * o.grad.abs().max()
        assert (grad - o.grad).abs().max() <= 8 * ulp


GELU = {**SIN2, "model": {**SIN2["model"], "activation": "gelu"}}
GELU_MODADD = {**MODADD, "model": {**MODADD["model"], "activation": "gelu"}}


@pytest.mark.parametrize("cfg", [GELU, GELU_MODADD], ids=["gelu-mlp", "gelu-modnet+minibatch"])
def test_without_a_stacked_form_packs_through_torch_func(cfg, tmp_path):
    """gelu has no written-out derivative in `stacked`: the pack goes through vmap and
    autograd, to float32 rounding of each run trained alone, and the log says so once."""
    from featscope.packing import engine

    assert engine(cfg["model"]) == "torch.func" and engine(SIN2["model"]) == "stacked"
    data = make_dataset(cfg["task"])
    runs = [(f"run-{s}", {**cfg, "seed": s, "optim": {**cfg["optim"], **values}}) for s, values in VALUES]
    with open(tmp_path / "log", "w") as log:
        got = train_packed(runs, data, log_file=log)
    assert (tmp_path / "log").read_text().splitlines() == [
        f"model '{cfg['model']['name']}' has no stacked form here: packing through torch.func"
    ]
    assert_same_as_alone(runs, data, got)


def test_torch_func_pack_matches_the_stacked_pack():
    """The two pack engines on one model the stacked form handles (relu MLP)."""
    data = make_dataset(SIN2["task"])
    runs = [(f"run-{s}", {**SIN2, "seed": s, "optim": {**SIN2["optim"], **values}}) for s, values in VALUES]
    stacked = train_packed(runs, data)
    original = packed.engine
    try:
        packed.engine = lambda model: "torch.func"
        through_func = train_packed(runs, data)
    finally:
        packed.engine = original
    for a, b in zip(stacked, through_func):
        for name, stack in a.checkpoints["params"].items():
            assert torch.allclose(b.checkpoints["params"][name], stack, rtol=1e-4, atol=1e-5), name
        assert np.allclose(a.metrics.loss, b.metrics.loss, rtol=1e-4, atol=1e-5)


def test_stacked_activations_are_those_with_a_written_out_derivative():
    from featscope import stacked
    from featscope.packing import STACKED_ACTIVATIONS

    assert set(STACKED_ACTIVATIONS) == set(stacked._DERIVATIVES) == set(stacked._ACTIVATE)


class _Branchy(torch.nn.Module):
    """A model vmap cannot batch: it branches on a value it reads with .item()."""

    def __init__(self, in_dim, out_dim, width=6):
        super().__init__()
        self.up, self.act, self.out = torch.nn.Linear(in_dim, width), torch.nn.ReLU(), torch.nn.Linear(width, out_dim)

    def forward(self, x):
        h = self.act(self.up(x))
        return self.out(h if h.mean().item() > -1.0 else -h)


def test_a_model_vmap_cannot_batch_trains_run_by_run_with_a_notice(tmp_path):
    from featscope.registry import MODELS, register_model

    register_model("branchy_test", layers={"h1": "act"}, readout="out")(
        lambda in_dim, out_dim, width=6: _Branchy(in_dim, out_dim, width)
    )
    try:
        cfg = {
            **SIN2,
            "model": {"name": "branchy_test"},
            "train": {"steps": 10, "loss": "mse"},
            "schedule": {"every": 5},
        }
        runs = [("a", {**cfg, "seed": 0}), ("b", {**cfg, "seed": 1})]
        data = make_dataset(cfg["task"])
        with open(tmp_path / "log", "w") as log:
            got = train_packed(runs, data, log_file=log)
        lines = (tmp_path / "log").read_text().splitlines()
        assert lines[0] == "model 'branchy_test' has no stacked form here: packing through torch.func"
        assert lines[1].startswith("vmap cannot batch this model (") and lines[1].endswith("its runs train one by one")
        for (run_id, c), result in zip(runs, got):
            alone = train_one(run_id, c, data, progress=False)
            assert result.info["packed"] == 1
            for name, stack in alone.checkpoints["params"].items():
                assert torch.equal(result.checkpoints["params"][name], stack), name
    finally:
        MODELS.pop("branchy_test")
