"""Crash-safe file writes: write a temporary file, fsync it, rename it over the target.

A reader (or a process killed mid-write) sees either the old file or the new one, never a torn
one. Every file the project writes that others read goes through here, and so do reads of torch
files that may come from elsewhere (`read_plain`: plain tensors only, never code in a pickle).
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vtr_core.errors import CheckpointError


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Per-machine cache for derived data that is costly to recompute ($VTR_CACHE_DIR)."""
    root = Path(os.environ.get("VTR_CACHE_DIR") or Path("~/.cache/vtr_core").expanduser())
    root.mkdir(parents=True, exist_ok=True)
    return root


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call `write(handle)` on a temporary file next to `path`, then atomically replace `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """Temporary files `atomic_write` left for `path` in processes killed mid-write (kill -9 runs
    no cleanup); only a process that alone writes `path` (under a lock) may delete them."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def remove_stale_temps(path: str | os.PathLike) -> int:
    """Delete them, so repeated kills do not pile up garbage; returns how many there were."""
    found = stale_temps(path)
    for temp in found:
        temp.unlink(missing_ok=True)
    return len(found)


def warm_file(path: str | os.PathLike, block: int = 8 << 20) -> int:
    """Read a file through once so its pages sit in the page cache (what a memory map of it then
    reads); bytes read, 0 when it is gone. Blocking: run it in a thread."""
    done = 0
    try:
        with open(path, "rb", buffering=0) as handle:
            buffer = bytearray(block)
            while count := handle.readinto(buffer):
                done += count
    except OSError:
        pass
    return done


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write and fsync, without the temporary file: for files inside a directory that is itself
    published later by one rename (an index segment), where a torn file is never visible."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(path, lambda handle: json.dump(obj, handle, indent=1), mode="w")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    atomic_write(path, lambda handle: torch.save(obj, handle))


# ------------------------------------------------------------------ reading untrusted files
def load_failure(exc: Exception) -> str:
    """A short reason for a failed `torch.load(weights_only=True)`, naming what a pickle would have run."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return f"it asks to run {refused.group(1)} when unpickled: refused"
    return text.strip().splitlines()[0][:160] if text.strip() else type(exc).__name__


def read_plain(path: str | Path, what: str = "checkpoint", kind: str = "file") -> Any:
    """`torch.load` of plain data only (weights_only): a pickle that would run code is refused.
    Errors read "{what} {path}: not a loadable {kind} of plain tensors (...)"."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about plain pickles before refusing them: the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{what} {path}: not a loadable {kind} of plain tensors ({load_failure(exc)})") from None
