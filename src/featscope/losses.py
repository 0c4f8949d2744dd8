"""The built-in training losses, registered as a plugin's loss is (``featscope.register_loss``).

One registration per loss: its per-run value over a pack's outputs (S, n, ...), which the
module engine differentiates with autograd and every evaluation row reads, and the same
loss with its gradient written out, for the stacked engine's hand-written backward
(`featscope.stacked.TrainingPass`). tests/test_packed.py checks each written gradient
against autograd's through the value, tests/test_tian_loss.py ``zero_mean_mse`` against
Tian's reference code.

This module imports no torch at import time (the config schema's ``train.loss`` enum is
read from the registry while Snakemake starts); each function imports what it needs.
"""

from __future__ import annotations

from .registry import register_loss


def by_autograd(fn, outputs, targets):
    """A loss without a written-out gradient: its per-run values and autograd's gradient of
    their sum with respect to the outputs (the stacked engine's backward starts there)."""
    import torch

    with torch.enable_grad():
        out = outputs.detach().requires_grad_()
        losses = fn(out, targets)
        (grad,) = torch.autograd.grad(losses.sum(), out)
    return losses.detach(), grad


def _mse_and_gradient(out, y):
    diff = out - y
    losses = diff.square().flatten(1).mean(1)
    return losses, diff.mul_(2.0 / diff[0].numel())


@register_loss("mse", applies_to=["regression"], gradient=_mse_and_gradient)
def mse(out, y):
    """Mean squared error over samples and outputs."""
    from torch.nn import functional as F

    return F.mse_loss(out, y, reduction="none").flatten(1).mean(1)


def _cross_entropy_and_gradient(out, labels):
    import torch

    log_p = out.log_softmax(-1)
    at_label = labels.unsqueeze(-1)
    losses = log_p.gather(-1, at_label).squeeze(-1).mean(-1).neg_()
    share = 1.0 / labels.shape[-1]  # d mean / d sample
    grad = log_p.exp_().mul_(share)  # softmax − one-hot, per sample's share of the mean
    return losses, grad.scatter_add_(-1, at_label, torch.full(at_label.shape, -share, dtype=grad.dtype))


@register_loss("cross_entropy", applies_to=["classification"], gradient=_cross_entropy_and_gradient)
def cross_entropy(out, labels):
    """Softmax cross-entropy (negative log-likelihood of the label), averaged over samples."""
    from torch.nn import functional as F

    per_sample = F.cross_entropy(out.flatten(0, 1), labels.flatten(), reduction="none")
    return per_sample.view(len(out), -1).mean(1)


def _projected_residual(out, labels):
    """P⊥₁(Y − Ŷ): the one-hot residual with its mean over classes removed."""
    from torch.nn.functional import one_hot

    resid = one_hot(labels, out.shape[-1]).to(out.dtype) - out
    return resid - resid.mean(dim=-1, keepdim=True)


def _zero_mean_mse_and_gradient(out, labels):
    resid = _projected_residual(out, labels)
    losses = resid.pow(2).sum(dim=-1).mean(dim=-1)
    return losses, resid.mul_(-2.0 / labels.shape[-1])  # −2 P⊥(Y − Ŷ) / n; resid is P⊥-projected already


@register_loss("zero_mean_mse", applies_to=["classification"], gradient=_zero_mean_mse_and_gradient)
def zero_mean_mse(out, labels):
    """Tian (2025)'s loss ‖P⊥₁(Y − Ŷ)‖², summed over classes and averaged over samples: the
    residual's mean over classes is projected out, so only the logits' differences matter.
    Equal to the reference code's ``compute_loss(outputs, labels, "mse")`` (luckmatters,
    ssl/real-dataset/cogo/modular_addition_simple2.py), value and gradient, to float32
    rounding (tests/test_tian_loss.py); no factor ½, so Adam's eps and an L2-coupled weight
    decay act as in the paper's runs. Written for one run's (n, C) outputs as for a pack's
    (S, n, C)."""
    return _projected_residual(out, labels).pow(2).sum(dim=-1).mean(dim=-1)
