"""featscope's one-hot net loss against Tian's reference code, ported verbatim.

The twin below is `compute_loss` of facebookresearch/luckmatters,
ssl/real-dataset/cogo/modular_addition_simple2.py (the criterion moved off CUDA), so the
tests fail if featscope's `zero_mean_mse` drifts from the paper's runs by any factor."""

import pytest
import torch
import torch.nn as nn

from featscope.stacked import TrainingPass
from featscope.training import loss_fn, per_run_loss, per_run_loss_and_gradient, zero_mean_mse

nll_criterion = nn.CrossEntropyLoss()


def compute_loss(outputs, labels, loss_type):  # verbatim from the reference, but for .cuda()
    loss = 0
    for i, o in enumerate(outputs):
        if loss_type == "nll":
            loss = loss + nll_criterion(o, labels[:, i])
        elif loss_type == "mse":
            o_zero_mean = o - o.mean(dim=1, keepdim=True)
            loss = (
                loss
                + o_zero_mean.pow(2).sum(dim=1).mean()
                - 2 * o_zero_mean.gather(1, labels[:, i].unsqueeze(1)).mean()
                + 1
                - 1.0 / o.shape[1]
            )
        else:
            raise RuntimeError(f"Unknown loss! {loss_type}")
    return loss


def _reference(out, labels, kind):
    """The reference's loss and its autograd gradient (float64) for outputs (n, C)."""
    o = out.detach().double().requires_grad_(True)
    loss = compute_loss([o], labels.unsqueeze(1), kind)
    loss.backward()
    return loss.detach(), o.grad


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", [5, 23])
def test_zero_mean_mse_is_the_references_mse_value_and_gradient(seed, classes):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(40, classes, generator=g) * 2 + 0.7  # an offset the projection must remove
    labels = torch.randint(classes, (40,), generator=g)
    want, want_grad = _reference(out, labels, "mse")

    o = out.clone().requires_grad_(True)
    got = zero_mean_mse(o, labels)
    got.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(o.grad.double(), want_grad, rtol=1e-5, atol=1e-7)

    packed, grad = per_run_loss_and_gradient("classification", "zero_mean_mse")(out.unsqueeze(0), labels.unsqueeze(0))
    assert packed.item() == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(grad[0].double(), want_grad, rtol=1e-5, atol=1e-7)
    assert per_run_loss("classification", "zero_mean_mse")(out.unsqueeze(0), labels.unsqueeze(0)).item() == (
        pytest.approx(want.item(), rel=1e-5)
    )


def test_cross_entropy_is_the_references_nll():
    g = torch.Generator().manual_seed(3)
    out, labels = torch.randn(30, 11, generator=g), torch.randint(11, (30,), generator=g)
    want, want_grad = _reference(out, labels, "nll")
    o = out.clone().requires_grad_(True)
    got = loss_fn("classification", "cross_entropy")(o, labels)
    got.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(o.grad.double(), want_grad, rtol=1e-5, atol=1e-7)


def test_stacked_engine_gives_the_references_weight_gradients():
    """A pack of two one-hot nets (the reference's ModularAdditionNN: one-hot codes, W, x², V)
    through the hand-written backward: each run's W and V gradients equal those of the
    reference's loss by autograd on the same weights."""
    m, width, n = 7, 16, 30
    g = torch.Generator().manual_seed(4)
    x = torch.randint(m, (n, 2), generator=g)
    labels = (x.sum(1) % m).long()
    params = {
        "hidden.0.weight": torch.randn(2, width, 2 * m, generator=g) * 0.3,
        "readout.weight": torch.randn(2, m, width, generator=g) * 0.3,
    }
    for p in params.values():
        p.requires_grad_(True)
    forward = TrainingPass({"name": "onehot", "width": width, "activation": "square"}, params, x, shared=True)
    losses, grad_out = per_run_loss_and_gradient("classification", "zero_mean_mse")(forward.output, labels.expand(2, n))
    forward.backward(grad_out)
    for run in range(2):
        w = params["hidden.0.weight"][run].detach().double().requires_grad_(True)
        v = params["readout.weight"][run].detach().double().requires_grad_(True)
        codes = torch.cat([nn.functional.one_hot(x[:, 0], m), nn.functional.one_hot(x[:, 1], m)], 1).double()
        loss = compute_loss([(codes @ w.T).pow(2) @ v.T], labels.unsqueeze(1), "mse")
        loss.backward()
        assert losses[run].item() == pytest.approx(loss.item(), rel=1e-5)
        torch.testing.assert_close(params["hidden.0.weight"].grad[run].double(), w.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(params["readout.weight"].grad[run].double(), v.grad, rtol=1e-4, atol=1e-6)


def _reference_net(m, width):
    """The reference's ModularAdditionNN, as ported once in benchmarks/tian_scale.py."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from tian_scale import ModularAdditionNN
    finally:
        sys.path.pop(0)
    return ModularAdditionNN(m, width)


@pytest.mark.parametrize("packed", [False, True])
def test_training_follows_the_reference_loop_from_the_same_weights(packed):
    """featscope's one-hot net, loss, Adam with L2-coupled weight decay and per-seed split,
    trained 40 full-batch steps, against the reference's main loop from the same initial
    weights (the reference draws them in another order, so they are copied across)."""
    from featscope.models import build_model
    from featscope.packed import train_packed
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    torch.set_num_threads(1)
    m, width, seed = 11, 24, 3
    task = {"name": "modadd", "M": m, "train_fraction": 0.5, "split": "per_seed", "seed": seed}
    cfg = {
        "task": task,
        "model": {"name": "onehot", "width": width, "activation": "square", "bias": False},
        "optim": {"name": "adam", "lr": 0.01, "weight_decay": 1e-3},
        "train": {"steps": 40, "loss": "zero_mean_mse", "eval_every": 1},
        "schedule": {"every": 40},
        "seed": seed,
    }
    data = make_dataset(task)
    got = train_packed([("a", cfg), ("b", cfg)], data)[0] if packed else train_one("a", cfg, data, progress=False)

    torch.manual_seed(seed)
    ours = build_model(cfg["model"], 2 * m, m)
    ref = _reference_net(m, width)
    with torch.no_grad():
        ref.W.weight.copy_(ours.hidden[0].weight)
        ref.V.weight.copy_(ours.readout.weight)
    opt = torch.optim.Adam(ref.parameters(), lr=0.01, weight_decay=1e-3)
    x, y = torch.as_tensor(data["x_train"]), torch.as_tensor(data["y_train"])[:, None]
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = compute_loss(ref(x), y, "mse")
        losses.append(loss.item())
        loss.backward()
        opt.step()
    train_rows = got.metrics[got.metrics.split == "train"].sort_values("step")
    assert train_rows.loss.iloc[:40].to_numpy() == pytest.approx(losses, rel=1e-4, abs=1e-6)
    last = {k: v[-1] for k, v in got.checkpoints["params"].items()}
    torch.testing.assert_close(last["hidden.0.weight"], ref.W.weight.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last["readout.weight"], ref.V.weight.detach(), rtol=1e-4, atol=1e-5)
