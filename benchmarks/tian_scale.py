"""Tian's grokking study at its own scale: two ratios, measured in this process.

    .venv/bin/python benchmarks/tian_scale.py              # both; a few minutes on one idle core
    .venv/bin/python benchmarks/tian_scale.py --steps 40   # (a) over more steps
    .venv/bin/python benchmarks/run.py --tian              # the same, from the benchmark runner

(a) One grid point of config/grokking.yaml's grokking-fig3 (M = 71, K = 2048, 40 %, 15 seeds,
    each with its own split) for `--steps` full-batch steps: featscope's packed training against
    the reference script's plain PyTorch loop (luckmatters, ssl/real-dataset/cogo/
    modular_addition_simple2.py: every epoch `test_model` on the training and the test set, then
    forward, `compute_loss(..., "mse")`, backward, Adam) run seed after seed. featscope is timed at
    the study's evaluation interval and at the reference's (every step).
(b) One grokking-fig3 run at its study's full length and schedule, trained as the workflow
    trains it (the packed path), then observed with the study's families: observing ÷ training
    (the target: at most 0.5).

Prints a table; nothing here is a pass/fail assertion. On one torch thread, as a workflow job.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn as nn
import yaml

REPO = Path(__file__).resolve().parent.parent


def fig3_study() -> dict:
    return yaml.safe_load((REPO / "config" / "grokking.yaml").read_text())["studies"]["grokking-fig3"]


def fig3_runs(seeds, weight_decay=None, steps=None, eval_every=None) -> list[tuple[str, dict]]:
    """The study's runs of one grid point, as the workflow expands them (task seed = run seed)."""
    study = fig3_study()
    runs = []
    for seed in seeds:
        cfg = copy.deepcopy({k: study[k] for k in ("task", "model", "optim", "train", "schedule")})
        cfg["task"]["seed"] = seed  # split: per_seed
        if weight_decay is not None:
            cfg["optim"]["weight_decay"] = weight_decay
        if steps is not None:
            cfg["train"]["steps"] = steps
        if eval_every is not None:
            cfg["train"]["eval_every"] = eval_every
        runs.append((f"seed-{seed}", dict(cfg, seed=seed)))
    return runs


# ----------------------------------------------------------- the reference, ported
class ModularAdditionNN(nn.Module):
    """The reference's net for two operands, σ = x², no batch norm, no extra layers."""

    def __init__(self, M, hidden_size):
        super().__init__()
        self.embedding = nn.Embedding(M, M).requires_grad_(False)
        with torch.no_grad():
            self.embedding.weight[:] = torch.eye(M, M)
        self.W = nn.Linear(2 * M, hidden_size, bias=False)
        self.V = nn.Linear(hidden_size, M, bias=False)

    def forward(self, x):
        embed_concat = torch.concat([self.embedding(x[:, i]) for i in range(2)], dim=1)
        return [self.V(self.W(embed_concat).pow(2))]


def compute_loss(outputs, labels):  # the reference's "mse" branch
    loss = 0
    for i, o in enumerate(outputs):
        o_zero_mean = o - o.mean(dim=1, keepdim=True)
        loss = (
            loss
            + o_zero_mean.pow(2).sum(dim=1).mean()
            - 2 * o_zero_mean.gather(1, labels[:, i].unsqueeze(1)).mean()
            + 1
            - 1.0 / o.shape[1]
        )
    return loss


def test_model(model, X_test, y_test):
    model.eval()
    with torch.no_grad():
        outputs = model(X_test)
        corrects = [(torch.max(o.data, 1)[1] == y_test[:, i]).sum().item() / len(y_test) for i, o in enumerate(outputs)]
        loss = compute_loss(outputs, y_test).item()
    return corrects, loss


def reference_run(cfg: dict, data: dict) -> list:
    """The reference's main loop for one seed, `cfg`'s steps; returns its per-epoch log."""
    torch.manual_seed(cfg["seed"])
    M = cfg["task"]["M"]
    X_train, X_test = torch.as_tensor(data["x_train"]), torch.as_tensor(data["x_test"])
    y_train, y_test = torch.as_tensor(data["y_train"])[:, None], torch.as_tensor(data["y_test"])[:, None]
    model = ModularAdditionNN(M, cfg["model"]["width"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"], weight_decay=cfg["optim"]["weight_decay"])
    log = []
    for _epoch in range(cfg["train"]["steps"]):
        log.append((test_model(model, X_train, y_train), test_model(model, X_test, y_test)))
        model.train()
        opt.zero_grad()
        loss = compute_loss(model(X_train), y_train)
        loss.backward()
        opt.step()
    return log


# ----------------------------------------------------------- (a) packed vs the reference loop
def packed_vs_reference(seeds: int, steps: int) -> list:
    from featscope.packed import train_packed
    from featscope.tasks import make_dataset

    runs = fig3_runs(range(seeds), steps=steps)
    datasets = [make_dataset(c["task"]) for _, c in runs]
    train_packed(fig3_runs(range(2), steps=2), datasets[:2])  # warm-up
    rows = []
    t = time.perf_counter()
    for (_, cfg), data in zip(runs, datasets):
        reference_run(cfg, data)
    ref = time.perf_counter() - t
    study_every = runs[0][1]["train"]["eval_every"]
    for every in (study_every, 1):
        t = time.perf_counter()
        train_packed(fig3_runs(range(seeds), steps=steps, eval_every=every), datasets)
        ours = time.perf_counter() - t
        rows.append(
            (
                f"grokking-fig3 grid point ({seeds} seeds, {steps} steps): reference loop / featscope packed, "
                f"evaluated every {every} step{'s' if every > 1 else ''}",
                ref / ours,
                f"{ref:.1f} s vs {ours:.1f} s ({ref / seeds / steps * 1e3:.0f} vs {ours / seeds / steps * 1e3:.0f} "
                "ms a run-step; the reference evaluates every step)",
            )
        )
    return rows


# ----------------------------------------------------------- (b) observing the K = 2048 net
def observe_vs_train() -> list:
    from featscope.observe import observe_families
    from featscope.packed import train_alone_packed
    from featscope.tasks import make_dataset

    study = fig3_study()
    [(run_id, cfg)] = fig3_runs([0])
    data = make_dataset(cfg["task"])
    train_alone_packed("warm-up", fig3_runs([0], steps=2)[0][1], data)
    t = time.perf_counter()
    bundle = train_alone_packed(run_id, cfg, data).checkpoints
    train = time.perf_counter() - t
    short = dict(bundle, steps=bundle["steps"][:2], params={k: v[:2] for k, v in bundle["params"].items()})
    observe_families("warm-up", study["observables"], short, data)
    t = time.perf_counter()
    observe_families(run_id, study["observables"], bundle, data)
    observe = time.perf_counter() - t
    return [
        (
            f"observe grokking-fig3 (K = 2048, {cfg['train']['steps']} steps, "
            f"{', '.join(study['observables'])}) at its schedule / its training",
            observe / train,
            f"{observe:.1f} s vs {train:.1f} s; {len(bundle['steps'])} checkpoints",
        )
    ]


def rows(seeds: int = 15, steps: int = 20) -> list:
    torch.set_num_threads(1)
    return packed_vs_reference(seeds, steps) + observe_vs_train()


def print_rows(table: list) -> None:
    width = max(len(r[0]) for r in table)
    for label, ratio, note in table:
        print(f"{label:<{width}}  {ratio:6.2f}  {note}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=15, help="seeds of the grid point (the study's: 15)")
    parser.add_argument("--steps", type=int, default=20, help="steps timed in (a)")
    args = parser.parse_args(argv)
    print_rows(rows(args.seeds, args.steps))


if __name__ == "__main__":
    main()
