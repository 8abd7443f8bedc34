"""Per-head stores: one head's video states for each immutable segment, computed once, memory-mapped.

A head turns stored backbone features into per-video states (vtr_core.methods.base); a search needs
every video's coarse state and, for its few candidates, the full states. Computing them at every
open (or, for candidates, at every query) costs seconds at open and tens of milliseconds per query.
Segments never change once written, so a head's states for a segment never go stale: they are
computed the first time a head meets the segment and kept beside the index, keyed by the head's
fingerprint (its method, settings and weights):

  <index>/heads/<head-key>/<segment>/<state>.npy     float32 [rows of the segment, ...]

An index that cannot be written (a bundled or read-only one) keeps its stores in the cache folder
instead ($VTR_CACHE_DIR/head-stores/<index-hash>/...). A store folder is published by one rename,
so a reader sees all of it or none; two processes that compute the same one race harmlessly (the
second rename loses and its copy is dropped). The index writer deletes the stores of segments that
no generation uses any more (`sweep_head_stores`). States are kept in float32, so a stored state
scores exactly as a freshly computed one; the cost is disk (EERCF's patch states, 4 bytes per
patch-token value, are the largest: about 0.9 MB per 12-frame video with the lite backbone).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vtr_core.resources import bundled_dir
from vtr_core.storage import cache_dir, fsync_dir

HEADS_DIR = "heads"
STORE_VERSION = 1  # part of every head key: a change of what is stored never reads old stores
TMP_PREFIX = ".tmp-"

StateBatches = Callable[[], Iterator[tuple[int, dict[str, np.ndarray]]]]  # yields (first row, states)


def stores_root(index_dir: Path) -> Path:
    """Where an index's head stores live: inside it when it may be written, else in the cache."""
    index_dir = Path(index_dir).resolve()
    if os.access(index_dir, os.W_OK) and not index_dir.is_relative_to(bundled_dir().resolve()):
        return index_dir / HEADS_DIR
    return cache_dir() / "head-stores" / hashlib.sha256(str(index_dir).encode()).hexdigest()[:16]


class HeadStore:
    """The states of one head (by key) for the segments of one index."""

    def __init__(self, index_dir: Path, head_key: str):
        self.root = stores_root(index_dir) / f"v{STORE_VERSION}-{head_key}"

    def states(self, segment: str, rows: int, batches: StateBatches) -> dict[str, np.ndarray]:
        """The segment's states, memory-mapped; computed from `batches` and written once when missing."""
        folder = self.root / segment
        if not folder.is_dir():
            self._write(folder, rows, batches)
        return {path.stem: np.load(path, mmap_mode="r") for path in sorted(folder.glob("*.npy"))}

    def _write(self, folder: Path, rows: int, batches: StateBatches) -> None:
        tmp = self.root / f"{TMP_PREFIX}{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir(parents=True)
        try:
            arrays: dict[str, np.ndarray] = {}
            for start, states in batches():
                for name, values in states.items():
                    if name not in arrays:
                        arrays[name] = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.float32,
                                                                 shape=(rows, *values.shape[1:]))
                    arrays[name][start : start + len(values)] = values
            for array in arrays.values():
                array.flush()
            del arrays
            for path in tmp.iterdir():
                with open(path, "rb+") as handle:
                    os.fsync(handle.fileno())
            fsync_dir(tmp)
            os.rename(tmp, folder)  # publish: all of it or nothing
            fsync_dir(self.root)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not folder.is_dir():  # another process published it first: theirs is as good
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_head_stores(index_dir: Path, live_segments: set[str]) -> int:
    """Delete stores of segments no generation uses, and unfinished ones of dead processes; how many."""
    root = Path(index_dir) / HEADS_DIR
    removed = 0
    for store in root.iterdir() if root.is_dir() else ():
        for folder in store.iterdir() if store.is_dir() else ():
            if folder.name.startswith(TMP_PREFIX):
                pid = folder.name[len(TMP_PREFIX):].rsplit("-", 2)[-2]
                if pid.isdigit() and _process_alive(int(pid)):
                    continue
            elif folder.name in live_segments:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
