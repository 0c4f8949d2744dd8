"""Atomic writes: a writer killed at any moment never leaves a partial file under the final name."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from featscope import io

WRITER = """
import sys, numpy as np, pandas as pd
from featscope.io import write_parquet, save_torch
import torch
frame = pd.DataFrame({"value": np.arange(2_000_000, dtype=np.float64)})
while True:
    write_parquet(frame, sys.argv[1])
    save_torch({"w": torch.arange(2_000_000)}, sys.argv[2])
"""


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1, 1.6])
def test_killed_writer_leaves_whole_files_or_none(tmp_path, delay):
    target, ckpt = tmp_path / "obs.parquet", tmp_path / "ck.pt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(ckpt)])
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if target.exists():
        assert len(io.read_parquet(target)) == 2_000_000
    if ckpt.exists():
        assert io.load_torch(ckpt)["w"][-1].item() == 1_999_999
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert all(name.startswith(".") for name in leftovers)  # hidden temporaries only


def test_damaged_parquet_is_named_and_moved_aside(tmp_path):
    path = tmp_path / "x.parquet"
    io.write_parquet(pd.DataFrame({"a": [1.0, 2.0]}), path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(io.CorruptFileError, match=str(path)):
        io.read_parquet(path)
    assert not path.exists() and (tmp_path / "x.parquet.corrupt").exists()


def test_schema_version_in_metadata(tmp_path):
    import pyarrow.parquet as pq

    io.write_parquet(pd.DataFrame({"a": np.arange(3)}), tmp_path / "v.parquet")
    meta = pq.read_schema(tmp_path / "v.parquet").metadata
    assert meta[b"featscope.schema_version"] == io.SCHEMA_VERSION.encode()
