"""Which runs can train in one pack. Torch-free, so that the workflow plans packs without
importing torch (a second or more on every Snakemake start)."""

from __future__ import annotations

from .config import fingerprint

STACKED_MODELS = ("mlp", "modnet", "onehot")  # the models `stacked` writes as batched products
VALUE_KEYS = ("lr", "weight_decay", "momentum", "warmup_steps")  # may differ within a pack


def pack_key(cfg: dict) -> str | None:
    """Runs with equal keys can train in one pack; None if this run cannot be packed."""
    model = cfg["model"]
    if model["name"] not in STACKED_MODELS or model.get("batch_norm"):
        return None
    shared = {k: v for k, v in cfg.items() if k not in ("seed", "optim")}
    if cfg["task"].get("split") == "per_seed":  # one dataset per run, of equal shapes: they pack
        shared["task"] = {k: v for k, v in cfg["task"].items() if k != "seed"}
    shared["optim"] = {k: v for k, v in cfg["optim"].items() if k not in VALUE_KEYS}
    return fingerprint(shared)
