"""The one training loop (`featscope.loop`) and its table of losses (`register_loss`).

Twins: the module engine against a plain PyTorch loop written here (``torch.optim``, the
same batch order), a resumed run against an uninterrupted one, a plugin loss without a
written gradient against the same loss written out, packed against alone."""

import numpy as np
import pandas as pd
import pytest
import torch

from featscope import loop, registry
from featscope.io import save_torch
from featscope.packed import train_packed
from featscope.tasks import make_dataset
from featscope.training import train_one

CNN = {
    "task": {"name": "digits", "n_train": 64, "n_test": 32, "seed": 0},
    "model": {"name": "cnn", "width": 16, "batch_norm": True},
    "optim": {"name": "adam", "lr": 0.003, "batch_size": 16, "warmup_steps": 4},
    "train": {"steps": 12, "loss": "cross_entropy", "eval_every": 3},
    "schedule": {"every": 4},
    "seed": 0,
}
SIN2 = {
    "task": {"name": "sin2", "d": 6, "f": 3, "n_train": 100, "n_test": 40, "seed": 0},
    "model": {"name": "mlp", "width": 16, "depth": 2, "activation": "relu"},
    "optim": {"name": "adam", "lr": 0.003, "batch_size": 32},
    "train": {"steps": 30, "loss": "mse", "eval_every": 5},
    "schedule": {"every": 5},
    "seed": 2,
}


def plain_loop(cfg, data):
    """A batch-norm CNN trained as a plain PyTorch loop would: torch.optim's fused Adam, a
    LambdaLR warm-up, the same seeded batch order; parameters and buffers at each step."""
    from featscope.models import build_model

    x, y = torch.as_tensor(data["x_train"]).float(), torch.as_tensor(data["y_train"]).long()
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["model"], x.shape[1], 10)
    o = cfg["optim"]
    opt = torch.optim.Adam(model.parameters(), lr=o["lr"], fused=True)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / o["warmup_steps"]))
    shuffle, batch, states = torch.Generator().manual_seed(cfg["seed"]), o["batch_size"], []
    for step in range(cfg["train"]["steps"] + 1):
        pos = (step * batch) % len(x)
        if pos < batch:
            order = torch.randperm(len(x), generator=shuffle)
        out = model(x[order[pos : pos + batch]])
        # A step's checkpoint holds its parameters and the buffers its batch has just updated.
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        if step == cfg["train"]["steps"]:
            break
        loss = torch.nn.functional.cross_entropy(out, y[order[pos : pos + batch]])
        opt.zero_grad()
        loss.backward()
        opt.step()
        warm.step()
    return states


def test_module_engine_is_a_plain_pytorch_loop_bit_for_bit():
    """Batch norm's buffers included: the module engine trains through the pack's optimiser
    (`BatchedOptimizer` over one-run views) and the loss table, and gives torch.optim's numbers."""
    data = make_dataset(CNN["task"])
    result = train_one("cnn", CNN, data, progress=False)
    want = plain_loop(CNN, data)
    steps = result.checkpoints["steps"].tolist()
    assert steps == [0, 4, 8, 12]
    assert any(k.endswith("running_mean") for k in result.checkpoints["params"])  # buffers are checkpointed
    for name, stack in result.checkpoints["params"].items():
        for slot, step in enumerate(steps):
            assert torch.equal(stack[slot], want[step][name].to(stack.dtype)), (name, step)
    rows = result.metrics
    assert rows.split.tolist()[:3] == ["batch", "train", "test"]  # a batch row, then the whole splits
    assert set(rows.step[rows.split == "test"]) == {0, 3, 4, 6, 8, 9, 12}  # eval_every, checkpoints, last


@pytest.mark.parametrize("cfg", [CNN, SIN2], ids=["module", "stacked"])
def test_a_killed_run_resumes_to_the_same_numbers(cfg, tmp_path, monkeypatch):
    data = make_dataset(cfg["task"])
    runs = [("r", cfg)]
    train = (lambda **kw: train_one("r", cfg, data, progress=False, **kw)) if cfg is CNN else None
    if train is None:
        train = lambda **kw: train_packed(runs, data, **kw)[0]  # noqa: E731
    whole = train()
    real, calls = loop._accuracies, {"n": 0}

    def killed_at_step_9(*args):
        calls["n"] += 1
        if calls["n"] > 9:
            raise KeyboardInterrupt
        return real(*args)

    state = tmp_path / "r.pt"
    monkeypatch.setattr(loop, "_accuracies", killed_at_step_9)
    with pytest.raises(KeyboardInterrupt):
        train(resume_path=state, resume_every=0.0)
    assert state.exists() and any(tmp_path.glob("r.checkpoints/run-0.bin"))
    monkeypatch.setattr(loop, "_accuracies", real)
    resumed = train(resume_path=state, resume_every=0.0)
    assert torch.equal(resumed.checkpoints["steps"], whole.checkpoints["steps"])
    for name, stack in whole.checkpoints["params"].items():
        assert torch.equal(resumed.checkpoints["params"][name], stack), name
    pd.testing.assert_frame_equal(resumed.metrics, whole.metrics)
    assert not (tmp_path / "r.checkpoints").exists()  # the spilled checkpoints are cleared


def test_a_state_of_an_older_format_is_ignored_not_misread(tmp_path):
    """train_one's states before the one loop were keyed by the config's fingerprint alone."""
    from featscope.config import fingerprint

    data = make_dataset(SIN2["task"])
    fresh = train_one("r", SIN2, data, progress=False)
    state = tmp_path / "r.pt"
    save_torch({"key": fingerprint(SIN2), "model": {}, "step": 17, "rows": [], "saved": {}}, state)
    got = train_one("r", SIN2, data, progress=False, resume_path=state, resume_every=1e9)
    pd.testing.assert_frame_equal(got.metrics, fresh.metrics)


def test_each_loss_applies_to_its_task_kinds_only():
    data = make_dataset(SIN2["task"])
    with pytest.raises(registry.RegistryError, match="loss 'cross_entropy' applies to \\['classification'\\]"):
        train_one("r", {**SIN2, "train": {"steps": 2, "loss": "cross_entropy"}}, data, progress=False)
    with pytest.raises(registry.RegistryError, match="unknown loss 'hinge'"):
        train_packed([("r", {**SIN2, "train": {"steps": 2, "loss": "hinge"}})], data)


def alone_model_at_step_0(cfg, x):
    from featscope.models import build_model

    torch.manual_seed(cfg["seed"])
    return build_model(cfg["model"], x.shape[1], 1)(x)


def test_a_plugin_loss_trains_in_both_engines_and_reaches_the_schema():
    """A loss registered without a written gradient: the stacked engine asks autograd for it.
    Its twin is the same loss registered with the gradient written out (l1's sign / count),
    which must give the pack the same numbers; and the module engine agrees to float32 rounding."""

    def l1(out, y):
        return (out - y).abs().flatten(1).mean(1)

    def l1_and_gradient(out, y):
        diff = out - y
        return diff.abs().flatten(1).mean(1), diff.sign() / diff[0].numel()

    registry.register_loss("test_l1", applies_to=["regression"])(l1)
    registry.register_loss("test_l1_written", applies_to=["regression"], gradient=l1_and_gradient)(l1)
    try:
        data = make_dataset(SIN2["task"])
        runs = [(f"s{s}", {**SIN2, "seed": s, "train": {**SIN2["train"], "loss": "test_l1"}}) for s in (0, 1)]
        auto = train_packed(runs, data)
        written = train_packed([(r, {**c, "train": {**c["train"], "loss": "test_l1_written"}}) for r, c in runs], data)
        for a, w in zip(auto, written):
            for name, stack in a.checkpoints["params"].items():
                assert torch.equal(w.checkpoints["params"][name], stack), name
            assert np.array_equal(a.metrics.loss, w.metrics.loss)
        alone = train_one(*runs[1], data, progress=False)
        for name, stack in alone.checkpoints["params"].items():
            assert torch.allclose(auto[1].checkpoints["params"][name], stack, rtol=1e-4, atol=1e-5), name
        x, y = (torch.as_tensor(data[k]).float() for k in ("x_train", "y_train"))
        with torch.no_grad():  # step 0's training-set row is the l1 loss of the initial net
            assert auto[1].metrics.query("step == 0 and split == 'train'").loss.item() == pytest.approx(
                (alone_model_at_step_0(runs[1][1], x) - y).abs().mean().item(), rel=1e-6
            )
        from featscope.config import complete_schema

        train = {"properties": {"loss": {"enum": []}}}
        schema = complete_schema({"$defs": {"study": {"properties": {"train": train}}}})
        assert "test_l1" in schema["$defs"]["study"]["properties"]["train"]["properties"]["loss"]["enum"]
    finally:
        registry.LOSSES.pop("test_l1", None)
        registry.LOSSES.pop("test_l1_written", None)


def test_the_extending_pages_loss_recipe_trains_with_huber_values():
    """The page's block, run as a plugin would be: per-run values against torch's Huber loss
    run by run, the schema takes the name, and a pack's first training row is the Huber
    loss of its initial net."""
    import re
    from pathlib import Path

    from torch.nn.functional import huber_loss

    from featscope.config import complete_schema

    page = (Path(__file__).resolve().parent.parent / "docs" / "extending.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page, re.DOTALL) if "register_loss" in b]
    try:
        exec(compile(block, "extending.md", "exec"), {"__name__": "huber_plugin"})
        spec = registry.loss("huber")
        out, y = torch.randn(3, 20, 2) * 2, torch.randn(3, 20, 2)
        want = torch.stack([huber_loss(out[i], y[i]) for i in range(3)])
        assert torch.allclose(spec.fn(out, y), want, rtol=1e-6)
        train = {"properties": {"loss": {"enum": []}}}
        schema = complete_schema({"$defs": {"study": {"properties": {"train": train}}}})
        assert "huber" in schema["$defs"]["study"]["properties"]["train"]["properties"]["loss"]["enum"]
        data = make_dataset(SIN2["task"])
        cfg = {**SIN2, "train": {**SIN2["train"], "loss": "huber"}}
        (packed,) = train_packed([("h", cfg)], data)
        alone = train_one("h", cfg, data, progress=False)
        assert np.allclose(packed.metrics.loss, alone.metrics.loss, rtol=1e-4, atol=1e-6)
        x, y = (torch.as_tensor(data[k]).float() for k in ("x_train", "y_train"))
        with torch.no_grad():
            first = huber_loss(alone_model_at_step_0(cfg, x), y).item()
        assert alone.metrics.query("step == 0 and split == 'train'").loss.item() == pytest.approx(first, rel=1e-6)
    finally:
        registry.LOSSES.pop("huber", None)
