"""Per-head stores: one head's video states for each immutable segment, computed once, memory-mapped.

A head turns stored backbone features into per-video states (vtr_core.methods.base); a search needs
every video's coarse state and, for its few candidates, the full states. Computing them at every
open (or, for candidates, at every query) costs seconds at open and tens of milliseconds per query.
Segments never change once written, so a head's states for a segment never go stale: they are
computed the first time a head meets the segment and kept beside the index, keyed by the head's
fingerprint (its method, settings and weights):

  <index>/heads/<head-key>/<segment>/<state>.npy     float32 [rows of the segment, ...]
  <index>/heads/<head-key>/stage1-<generation>.faiss  its stage-1 structure over the moments of a
                                                      generation, faiss ids = moment ids (.json: plan)

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
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vtr_core.index.segments import concatenate_arrays
from vtr_core.resources import bundled_dir
from vtr_core.storage import atomic_write_json, cache_dir, fsync_dir

HEADS_DIR = "heads"
STORE_VERSION = 1  # part of every head key: a change of what is stored never reads old stores
TMP_PREFIX = ".tmp-"
STRUCTURE_PREFIX = "stage1-"
KEEP_STRUCTURES = 2  # per head: the newest, and the one a reader of the previous generation may be loading

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

    def has(self, segment: str) -> bool:
        return (self.root / segment).is_dir()

    def read(self, segment: str) -> dict[str, np.ndarray] | None:
        """A segment's stored states, memory-mapped, or None when there are none (or they went)."""
        try:
            paths = sorted((self.root / segment).glob("*.npy"))
            return {path.stem: np.load(path, mmap_mode="r") for path in paths} or None
        except (OSError, ValueError):
            return None

    # -- stage-1 structures, one file per generation they cover ----------------------------------
    def structure_path(self, generation: int) -> Path:
        return self.root / f"{STRUCTURE_PREFIX}{generation:08d}.faiss"

    def structures(self) -> list[int]:
        """Generations with a stored structure, newest first."""
        found = [int(p.stem[len(STRUCTURE_PREFIX):]) for p in self.root.glob(f"{STRUCTURE_PREFIX}*.faiss")
                 if p.stem[len(STRUCTURE_PREFIX):].isdigit() and p.with_suffix(".json").is_file()]
        return sorted(found, reverse=True)

    def structure_plan(self, generation: int) -> dict:
        return json.loads(self.structure_path(generation).with_suffix(".json").read_text())

    def load_structure(self, generation: int, mapped: bool):
        """A saved structure. `mapped`: its vectors memory-mapped rather than read (faiss
        IO_FLAG_MMAP_IFC; read-only: adding to it crashes faiss): opening 1M moments takes 0.2 s
        instead of 1.5 s from a warm page cache. The kernel is asked to read the whole file ahead in
        the background, so the first queries do not fault it in page by page."""
        import faiss

        path = self.structure_path(generation)
        if not mapped:
            return faiss.read_index(str(path))
        with open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)

    def save_structure(self, generation: int, structure, plan: dict) -> None:
        """A faiss structure (temporary file, fsync, rename), then its plan, which alone makes it
        count: it is written last."""
        import faiss

        path = self.structure_path(generation)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:6]}.tmp")
        try:
            faiss.write_index(structure, str(tmp))
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write_json(path.with_suffix(".json"), plan)

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


def merge_head_stores(index_dir: Path, sources: list[str], merged: str) -> int:
    """Each head's states for a merged segment, concatenated from its sources' where it has them
    all (rows of a merged segment are its sources' rows in order); how many heads."""
    root = Path(index_dir) / HEADS_DIR
    done = 0
    for store in root.iterdir() if root.is_dir() else ():
        parts = [store / name for name in sources]
        if not store.is_dir() or not all(p.is_dir() for p in parts) or (store / merged).exists():
            continue
        tmp = store / f"{TMP_PREFIX}{merged}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        try:
            concatenate_arrays(tmp, parts, sorted(p.stem for p in parts[0].glob("*.npy")))
            for path in tmp.iterdir():
                with open(path, "rb+") as handle:
                    os.fsync(handle.fileno())
            try:
                os.rename(tmp, store / merged)
                done += 1
            except OSError:  # a searcher computed them meanwhile: theirs are as good
                if not (store / merged).is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return done


def _sweep_structures(store: Path) -> int:
    """All but the KEEP_STRUCTURES newest finished structures (newer unfinished ones may be in the
    making by a searcher: kept)."""
    files = list(store.glob(f"{STRUCTURE_PREFIX}*"))
    finished = sorted({p.stem for p in files if p.suffix == ".json"}, reverse=True)
    if len(finished) <= KEEP_STRUCTURES:
        return 0
    oldest_kept = finished[KEEP_STRUCTURES - 1]
    removed = 0
    for path in files:
        if path.stem < oldest_kept:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def sweep_head_stores(index_dir: Path, live_segments: set[str], merges: dict[str, list[str]] | None = None) -> int:
    """Delete stores of segments no generation uses, unfinished ones of dead processes, and all but
    the newest stage-1 structures; how many. A source's store is kept while its merged segment (of
    `merges`, merged segment -> sources) has none in that head's store: it will be reused there."""
    root = Path(index_dir) / HEADS_DIR
    removed = 0
    for store in root.iterdir() if root.is_dir() else ():
        removed += _sweep_structures(store) if store.is_dir() else 0
        wanted = set(live_segments)
        for merged, sources in (merges or {}).items():
            if merged in live_segments and not (store / merged).is_dir():
                wanted.update(sources)
        for folder in store.iterdir() if store.is_dir() else ():
            if folder.is_file():
                continue
            if folder.name.startswith(TMP_PREFIX):
                pid = folder.name[len(TMP_PREFIX):].rsplit("-", 2)[-2]
                if pid.isdigit() and _process_alive(int(pid)):
                    continue
            elif folder.name in wanted:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
