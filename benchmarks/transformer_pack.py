"""The transformer's torch.func pack against the same runs trained one by one.

A model without a hand-written stacked form packs through ``vmap`` over
``functional_call`` (`featscope.packed`); packing must not cost more than running the
pack's runs one after the other. Prints, per depth, the fastest of three timings of each
side (one thread, 300 full-batch steps of the `grokking-transformer` study's net on
(a + b) mod 31 with 40 % of the pairs, three seeds each on its own split) and their ratio.

    PYTHONPATH=src python benchmarks/transformer_pack.py
"""

from __future__ import annotations

import time

import torch

from featscope.packed import train_packed
from featscope.tasks import make_dataset
from featscope.training import train_one


def runs(n_layers: int, steps: int = 300):
    cfg = {
        "task": {"name": "modadd", "M": 31, "train_fraction": 0.4, "split": "per_seed"},
        "model": {"name": "transformer", "d_model": 64, "n_heads": 4, "d_mlp": 256, "n_layers": n_layers},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1.0, "betas": [0.9, 0.98]},
        "train": {"steps": steps, "loss": "cross_entropy", "eval_every": 50},
        "schedule": {"every": 100},
    }
    out = [(f"seed-{s}", {**cfg, "seed": s, "task": {**cfg["task"], "seed": s}}) for s in range(3)]
    return out, [make_dataset(c["task"]) for _, c in out]


def fastest(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    torch.set_num_threads(1)
    for n_layers in (1, 2):
        pack, data = runs(n_layers)
        packed = fastest(lambda p=pack, d=data: train_packed(p, d))
        alone = fastest(lambda p=pack, ds=data: [train_one(r, c, d, progress=False) for (r, c), d in zip(p, ds)])
        print(
            f"transformer, {n_layers} layer(s), 3 runs x 300 steps: torch.func pack {packed:.2f} s, "
            f"one by one {alone:.2f} s, pack / one by one = {packed / alone:.2f}"
        )


if __name__ == "__main__":
    main()
