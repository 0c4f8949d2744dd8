"""The issue's check, after the fix: Tian's reference loop (ported in benchmarks/tian_scale.py)
and featscope's packed training on the same 10 seeds and splits, M = 23, K = 512, lr 0.01,
weight decay 1e-4, 40 % training data, 1500 full-batch epochs; how many seeds generalise
(final test accuracy >= 0.95) and each seed's final test accuracy.

    PYTHONPATH=src python docs/tian/reference_vs_featscope.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from tian_scale import reference_run  # noqa: E402

from featscope.packed import train_packed  # noqa: E402
from featscope.tasks import make_dataset  # noqa: E402

torch.set_num_threads(1)
SEEDS = range(10)
runs = []
for seed in SEEDS:
    task = {"name": "modadd", "M": 23, "train_fraction": 0.4, "split": "per_seed", "seed": seed}
    cfg = {
        "task": task,
        "model": {"name": "onehot", "width": 512, "activation": "square", "bias": False},
        "optim": {"name": "adam", "lr": 0.01, "weight_decay": 1e-4},
        "train": {"steps": 1500, "loss": "zero_mean_mse", "eval_every": 50},
        "schedule": {"every": 1500},
        "seed": seed,
    }
    runs.append((f"seed-{seed}", cfg))
datasets = [make_dataset(c["task"]) for _, c in runs]
ours = []
for result in train_packed(runs, datasets):
    test = result.metrics[result.metrics.split == "test"].sort_values("step")
    ours.append(float(test.acc.iloc[-1]))
theirs = []
for (_, cfg), data in zip(runs, datasets):
    cfg = dict(cfg, train=dict(cfg["train"], steps=1501))  # its log's last entry: after 1500 steps
    theirs.append(reference_run(cfg, data)[-1][1][0][0])
print("seed  reference  featscope")
for seed, a, b in zip(SEEDS, theirs, ours):
    print(f"{seed:4d}  {a:9.3f}  {b:9.3f}")
print(f"generalised: reference {sum(a >= 0.95 for a in theirs)}/10, featscope {sum(b >= 0.95 for b in ours)}/10")
