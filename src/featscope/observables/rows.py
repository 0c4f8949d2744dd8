"""Long-form rows as the family functions build them: blocks, assembled once per run.

A block is one (observable, layer) over some checkpoints, its rows already in (step, k)
order. A family returns the blocks of one chunk of checkpoints; `frame` joins a run's
chunks into the contract's long form, ordered by (observable, layer, step, k). Building
one frame per chunk and sorting the joined rows with pandas cost an 8-run observe job of
the nonlinearity study about a sixth of its time (cProfile: frames, the sort and their
concatenation); ordering whole blocks needs no row sort.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

COLUMNS = ["run", "step", "observable", "layer", "k", "value"]
NO_K = -1  # a block's k where the observable has no index


class Block(NamedTuple):
    observable: str
    layer: str | None
    step: np.ndarray  # int64 (m,)
    k: np.ndarray  # int64 (m,), NO_K where none
    value: np.ndarray  # float64 (m,)


@dataclass
class Rows:
    blocks: list[Block] = field(default_factory=list)

    @classmethod
    def per_checkpoint(cls, steps, blocks) -> Rows:
        """From (observable, layer, values) with values per checkpoint `steps` (T,) or per
        index (T, K), k = 0…K−1."""
        steps = np.asarray(steps, dtype=np.int64)
        out = []
        for observable, layer, values in blocks:
            values = _float64(values)
            if values.ndim == 1:
                out.append(Block(observable, layer, steps, np.full(len(steps), NO_K), values))
            else:
                t, kk = values.shape
                out.append(
                    Block(observable, layer, np.repeat(steps, kk), np.tile(np.arange(kk), t), values.reshape(-1))
                )
        return cls(out)

    def __add__(self, other: Rows) -> Rows:
        return Rows(self.blocks + other.blocks)


def _float64(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def frame(run_id: str, parts: list[Rows]) -> pd.DataFrame:
    """The rows of a run's chunks `parts` as one frame, ordered by (observable, layer, step, k)
    with a missing layer or k last, as a stable sort of the chunks' rows in order would."""
    return table(run_id, parts).to_pandas()


def table(run_id: str, parts: list[Rows]) -> pa.Table:
    """`frame` as the Arrow table that is written to Parquet: the contract's schema, its pandas
    metadata included (pandas reads `k` back as Int64). Made from the blocks' arrays without
    a pandas frame in between: an 8-run observe job built frames and converted them again
    for Parquet."""
    blocks = [b for part in parts for b in part.blocks]
    groups = sorted({(b.observable, b.layer) for b in blocks}, key=_group_key)
    rank = {g: i for i, g in enumerate(groups)}
    blocks.sort(key=lambda b: rank[b.observable, b.layer])  # stable: chunks stay in order
    sizes = [len(b.step) for b in blocks]
    step, k, value = (
        _joined([getattr(b, name) for b in blocks], dtype)
        for name, dtype in (("step", np.int64), ("k", np.int64), ("value", np.float64))
    )
    order = _order(np.repeat([rank[b.observable, b.layer] for b in blocks], sizes), step, k)
    if order is not None:
        step, k, value = step[order], k[order], value[order]
    text = schema().field("run").type  # pandas 3 makes large_string columns of text, pandas 2 string
    columns = [
        _labels([run_id], [len(step)], None, text),
        pa.array(step),
        _labels([b.observable for b in blocks], sizes, order, text),
        _labels([b.layer for b in blocks], sizes, order, text),
        pa.array(k, mask=k == NO_K),
        pa.array(value),
    ]
    return pa.Table.from_arrays(columns, schema=schema())


@functools.cache
def schema() -> pa.Schema:
    """The long form's Arrow schema with pandas' metadata for it, which names the pandas
    dtypes (Int64 for k, string for layer) and not the rows: one for every table. Taken
    from a row of text, not an empty frame: pandas 2 keeps strings as objects, and Arrow
    reads an empty object column as nulls."""
    template = pd.DataFrame(
        {
            "run": ["r"],
            "step": np.zeros(1, np.int64),
            "observable": ["o"],
            "layer": pd.Series(["h1"], dtype="string"),
            "k": pd.Series([0], dtype="Int64"),
            "value": np.zeros(1),
        }
    )
    return pa.Schema.from_pandas(template, preserve_index=False)


def _joined(arrays: list, dtype) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.empty(0, dtype)


def _group_key(group):
    observable, layer = group
    return observable, layer is None, layer or ""


def _order(group: np.ndarray, step: np.ndarray, k: np.ndarray) -> np.ndarray | None:
    """None where rows in block order are already sorted by (group, step, k); else the
    stable order that sorts them (blocks of one group whose steps interleave)."""
    k_last = np.where(k == NO_K, np.iinfo(np.int64).max, k)
    dg, ds, dk = np.diff(group), np.diff(step), np.diff(k_last)
    if ((dg > 0) | ((dg == 0) & ((ds > 0) | ((ds == 0) & (dk >= 0))))).all():
        return None
    return np.lexsort((k_last, step, group))


def _labels(names: list, counts, order, text: pa.DataType) -> pa.Array:
    """A string column holding names[i] counts[i] times (None: null), made by an Arrow take:
    an order of magnitude faster than repeating NumPy strings, which pandas turns into its
    string column one by one."""
    codes = np.repeat(np.arange(len(names), dtype=np.int32), counts)
    if order is not None:
        codes = codes[order]
    return pa.array(names, type=text).take(codes)
