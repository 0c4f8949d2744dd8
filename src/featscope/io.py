"""Atomic file writing and checked reading.

Every result file is written to a temporary name in the same directory and
renamed into place, so a killed writer never leaves a partial file under its
final name. Readers turn any decoding failure into an error naming the file.

pandas, pyarrow and torch are imported where they are used: the workflow reads its JSON
files through this module while Snakemake starts, and should not pay for them there.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SCHEMA_VERSION = "1"
_SCHEMA_KEY = b"featscope.schema_version"


class CorruptFileError(RuntimeError):
    """A result file exists but cannot be decoded. It has been moved aside to
    ``<name>.corrupt`` (nothing is deleted), so re-running snakemake rebuilds it."""


def quarantine(path, err: Exception) -> CorruptFileError:
    """Move a damaged file out of the way and return the error that names it."""
    path = Path(path)
    aside = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, aside)
        where = f"; moved to {aside}, re-run snakemake to rebuild it"
    except OSError:
        where = ""
    return CorruptFileError(f"damaged file {path}: {type(err).__name__}: {err}{where}")


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_parquet(frame: pd.DataFrame | pa.Table, path) -> None:
    """A pandas frame, or an Arrow table as it is, with the schema version in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_SCHEMA_KEY] = SCHEMA_VERSION.encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise quarantine(path, err) from err


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except ValueError as err:
        raise quarantine(path, err) from err


def save_torch(obj, path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path):
    import torch

    # map_location='cpu': a checkpoint written on a GPU is observed on a CPU.
    if not Path(path).exists():
        raise FileNotFoundError(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise quarantine(path, err) from err
