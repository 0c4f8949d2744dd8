import numpy as np
import pandas as pd
import pytest
from long_form import frame_of, pandas_long_form

from featscope.observables.rows import NO_K, Block, Rows, frame


def _chunk(steps, rng, interleave=False):
    steps = np.asarray(steps)
    blocks = [
        ("nonlinear_neurons", "h2", steps[:, None]),
        ("active_rate", "h1", rng.random((len(steps), 3))),
        ("update_cosine", None, steps[:, None]),
        ("active_rate", "h10", rng.random((len(steps), 2))),
    ]
    rows = Rows.per_checkpoint(steps, [(o, layer, v[:, 0] if v.shape[1] == 1 else v) for o, layer, v in blocks])
    if interleave:  # a second block of a group within the chunk, its steps between the first's
        rows += Rows([Block("active_rate", "h1", steps + 1, np.zeros(len(steps), np.int64), rng.random(len(steps)))])
    return Rows(rows.blocks[::-1])  # groups out of order within a chunk


@pytest.mark.parametrize("interleave", [False, True], ids=["blocks-in-order", "steps-interleaved"])
def test_rows_assembled_by_block_match_pandas_stable_sort(interleave):
    rng = np.random.default_rng(0)
    parts = [_chunk([0, 2, 4], rng, interleave), _chunk([6, 8], rng, interleave), Rows()]
    got = frame("r", parts)
    want = pandas_long_form("r", [frame_of(p) for p in parts if p.blocks])
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.k.isna().sum() == 2 * 5  # the scalars' k is missing, not NO_K
    assert list(got.layer.unique()[:2]) == ["h1", "h10"] and got.layer.isna().iloc[-1]


def test_rows_of_nothing_are_an_empty_frame_of_the_contract_types():
    got = frame("r", [Rows(), Rows()])
    assert list(got.columns) == ["run", "step", "observable", "layer", "k", "value"] and len(got) == 0
    assert str(got.step.dtype) == "int64" and str(got.k.dtype) == "Int64" and str(got.value.dtype) == "float64"


def test_per_index_values_get_their_index_as_k():
    rows = Rows.per_checkpoint([10, 20], [("rate", "h1", np.array([[0.1, 0.2], [0.3, 0.4]]))])
    [block] = rows.blocks
    assert block.step.tolist() == [10, 10, 20, 20] and block.k.tolist() == [0, 1, 0, 1]
    assert NO_K not in block.k


def test_tables_are_written_as_the_frames_pandas_would_write(tmp_path):
    # Observe jobs write `rows.table` without a pandas frame in between: the file must be the
    # one pandas writes from `frame` (schema and pandas metadata included), byte for byte,
    # and read back as the frame, k as Int64 with its missing values.
    from featscope import io
    from featscope.observables.rows import table

    rng = np.random.default_rng(1)
    parts = [_chunk([0, 2, 4], rng), _chunk([6, 8], rng, interleave=True)]
    io.write_parquet(table("r", parts), tmp_path / "table.parquet")
    io.write_parquet(frame("r", parts), tmp_path / "frame.parquet")
    assert (tmp_path / "table.parquet").read_bytes() == (tmp_path / "frame.parquet").read_bytes()
    back = pd.read_parquet(tmp_path / "table.parquet")
    pd.testing.assert_frame_equal(back, frame("r", parts), check_exact=True)
    assert str(back.k.dtype) == "Int64" and back.k.isna().sum() == 2 * 5
