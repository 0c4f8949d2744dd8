"""The long form as pandas makes it: the slow twin of `featscope.observables.rows.frame`."""

import pandas as pd

COLUMNS = ["run", "step", "observable", "layer", "k", "value"]


def pandas_long_form(run_id: str, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames (step, observable, layer, k, value) of a run's chunks, joined and sorted stably."""
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "run", run_id)
    frame["k"] = frame["k"].astype("Int64")
    frame["layer"] = frame["layer"].astype("string")
    return frame[COLUMNS].sort_values(["observable", "layer", "step", "k"], kind="stable", ignore_index=True)


def frame_of(rows) -> pd.DataFrame:
    """A `Rows` as plain row tuples, one by one."""
    records = [
        (int(s), b.observable, b.layer, None if k < 0 else int(k), float(v))
        for b in rows.blocks
        for s, k, v in zip(b.step, b.k, b.value)
    ]
    return pd.DataFrame(records, columns=COLUMNS[1:]).astype({"step": "int64", "value": "float64"})
