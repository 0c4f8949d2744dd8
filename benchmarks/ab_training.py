"""The training rows of `run.py`, for two versions of the library, alternated.

    .venv/bin/python benchmarks/ab_training.py BASE_SRC NEW_SRC [--rounds 3]

BASE_SRC and NEW_SRC are the ``src`` folders of two checkouts (a ``git clone`` of the
version to compare against, say). Each row is measured by `run.py`'s own code in fresh
processes, the two versions one after the other, ``--rounds`` times, in alternating order;
a row's time on each side is its fastest, and the ratio NEW ÷ BASE is printed. The two
sides of a pair are measured seconds apart, so they share the machine's drift and load.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (run.py's measuring code, unchanged)

ROWS = {
    "train_one, 1 seed": lambda tmp: bench.featscope_train_seconds(str(tmp / "ck.pt")),
    "a lone run (a pack of one)": lambda tmp: bench.lone_run_seconds(),
    "16 seeds packed, 1 thread": lambda tmp: bench.packed_seconds(16, 1),
    "16 seeds packed, 2 threads": lambda tmp: bench.packed_seconds(16, 2),
    "two 8-run packs side by side, 1 thread each": lambda tmp: bench.side_by_side([bench.packed_code(8)] * 2),
}


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the src folder of the version to compare against")
    parser.add_argument("new", help="the src folder of the version measured")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--one-thread",
        action="store_true",
        help="leave out the 2-thread row (on a loaded machine its threads wait on each other)",
    )
    args = parser.parse_args()
    sides = {"base": str(Path(args.base).resolve()), "new": str(Path(args.new).resolve())}
    rows = {row: m for row, m in ROWS.items() if not (args.one_thread and "2 threads" in row)}
    seconds = {row: {side: [] for side in sides} for row in rows}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for row, measure in rows.items():
                for side in list(sides)[:: 1 if rnd % 2 == 0 else -1]:
                    os.environ["PYTHONPATH"] = sides[side]  # the child processes import this version
                    seconds[row][side].append(measure(Path(tmp))["seconds"])
                times = {side: f"{v[-1]:.2f} s" for side, v in seconds[row].items()}
                print(f"round {rnd + 1}: {row}: {times}, load {os.getloadavg()[0]:.1f}", flush=True)
    print("| row | base (fastest) | new (fastest) | new ÷ base |\n|---|---|---|---|")
    for row, v in seconds.items():
        base, new = min(v["base"]), min(v["new"])
        print(f"| {row} | {base:.2f} s | {new:.2f} s | {new / base:.3f} |")


if __name__ == "__main__":
    main()
