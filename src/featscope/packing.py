"""Which runs can train in one pack, and through which engine. Torch-free, so that the
workflow plans packs without importing torch (a second or more on every Snakemake start).

Every registered model packs unless it carries buffers that training updates (batch norm's
running statistics: ``batch_norm: true``), which train run by run. A model packs through
its hand-written stacked form (`featscope.stacked`) where its architecture registered one
and its activation has a written-out derivative there; any other through ``torch.func``
(``vmap`` over ``functional_call``, autograd for the backward).
"""

from __future__ import annotations

from .config import fingerprint

# The activations `stacked` has a written-out derivative for (tests/test_packed.py checks
# this list against `stacked._DERIVATIVES`).
STACKED_ACTIVATIONS = ("relu", "tanh", "square")
VALUE_KEYS = ("lr", "weight_decay", "momentum", "warmup_steps")  # may differ within a pack


def has_stacked_form(model: dict) -> bool:
    """Whether a model block trains and is observed through the hand-written stacked form."""
    from .architectures import model_spec

    spec = model_spec(model["name"])
    if spec.stacked is None:
        return False
    return spec.resolve(model).get("activation") in STACKED_ACTIVATIONS


def why_unpacked(cfg: dict) -> str | None:
    """Why a run cannot train in a pack (one line for the job log), or None if it can."""
    model = cfg["model"]
    if model.get("batch_norm"):
        return f"model '{model['name']}' with batch_norm updates buffers while training: it trains run by run"
    return None


def engine(model: dict) -> str:
    """``"stacked"`` or ``"torch.func"``: how a packable model's packs train."""
    return "stacked" if has_stacked_form(model) else "torch.func"


def pack_key(cfg: dict) -> str | None:
    """Runs with equal keys can train in one pack; None if this run cannot be packed."""
    if why_unpacked(cfg) is not None:
        return None
    shared = {k: v for k, v in cfg.items() if k not in ("seed", "optim")}
    if cfg["task"].get("split") == "per_seed":  # one dataset per run, of equal shapes: they pack
        shared["task"] = {k: v for k, v in cfg["task"].items() if k != "seed"}
    shared["optim"] = {k: v for k, v in cfg["optim"].items() if k not in VALUE_KEYS}
    return fingerprint(shared)
