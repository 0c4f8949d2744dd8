"""A content-addressed store of finished results, made of hard links (no extra disk).

A workflow job makes a whole block of runs; when the block must run again because a member
was added, Snakemake first deletes all the block's outputs. Each result is therefore also
linked under a key that fingerprints exactly what it was made from (a run's training
config; a checkpoint file's bytes with a family's version and parameters), and a job
restores every member whose key is present instead of computing it again.

A training key also holds `code_version`, a digest of featscope's own source and of the
loaded plugin modules: after any change to that code, a block that reruns trains all its
members again rather than mixing old members with new ones. (An observe key holds the
family's version instead: a family's code change is a version bump.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

MANIFEST = "manifest.json"
_CODE_VERSION: dict[tuple, str] = {}


def code_version() -> str:
    """SHA-1 over the source files of the ``featscope`` package and of the plugin modules
    loaded so far (`featscope.registry.load_plugins`), in a fixed order: equal exactly when
    the code that trains is. Computed once per set of modules in a process."""
    import sys

    from . import registry

    here = Path(__file__).resolve().parent
    files = sorted(here.rglob("*.py"))
    for name in sorted(registry.PLUGINS_LOADED):
        origin = getattr(sys.modules.get(name), "__file__", None)
        if origin:
            files.append(Path(origin).resolve())
    key = tuple(files)
    if key not in _CODE_VERSION:
        digest = hashlib.sha1()
        for path in files:
            digest.update(str(path.relative_to(here) if path.is_relative_to(here) else path.name).encode())
            digest.update(path.read_bytes())
        _CODE_VERSION[key] = digest.hexdigest()
    return _CODE_VERSION[key]


def file_digest(path) -> str:
    """SHA-1 of a file's bytes."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another filesystem, or no hard links there: a copy
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def restore(entry, outputs: dict) -> bool:
    """Link the files of cache `entry` (a folder) to `outputs` ({name: path}); False, and
    nothing written, unless all of them are cached with the bytes they were stored with
    (a file changed in place through one of its links, a damaged checkpoint say, voids
    the entry)."""
    entry = Path(entry)
    try:
        digests = json.loads((entry / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return False
    if not all(name in digests and (entry / name).is_file() for name in outputs):
        return False
    if any(file_digest(entry / name) != digests[name] for name in outputs):
        shutil.rmtree(entry, ignore_errors=True)
        return False
    for name, out in outputs.items():
        _link(entry / name, Path(out))
    return True


def store(entry, outputs: dict) -> None:
    """Link `outputs` ({name: path}, written) into cache `entry`, with their digests."""
    entry = Path(entry)
    for name, out in outputs.items():
        _link(Path(out), entry / name)
    tmp = entry / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({name: file_digest(entry / name) for name in outputs}))
    os.replace(tmp, entry / MANIFEST)
