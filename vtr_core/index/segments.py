"""Segments: the immutable folders of feature arrays an index is made of.

  segments/<name>/coarse.npy    float32 [n, D]      the moments' coarse (mean-pooled) vectors
                  frames.npy    float16 [n, T, D]   per-frame features
                  patches.npy   float16 [n, T, P, D] (indexes built with patch tokens)
                  raw.npy       float16 [n, T, R]   (backbones with raw features)
                  strips.bin    the moments' frame-strip JPEGs, one after another
                  strips.npy    int64 [n + 1]       where each strip starts in strips.bin

A segment is written under a temporary name, fsynced and renamed: it appears whole or not at all,
and never changes after. Arrays are memory-mapped, so reading N rows is one fancy-index per
segment. Merging concatenates whole segments (dead rows included), so a row's states in any
per-head store can be concatenated the same way instead of recomputed.
"""

from __future__ import annotations

import mmap
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from vtr_core.errors import IndexFormatError
from vtr_core.index.records import IndexHeader, MomentFeatures
from vtr_core.storage import fsync_dir, write_synced

SEGMENTS_DIR = "segments"
TMP_PREFIX = ".tmp-"
ARRAYS = ("coarse", "frames", "patches", "raw")
CHUNK_BYTES = 32 << 20  # a merge copies and syncs this much at a time
PREFETCH_MAX_ROWS = 4096  # gathers of up to this many rows ask for their pages first


@dataclass
class Segment:
    """The arrays of one segment, memory-mapped (patches and raw are optional)."""

    coarse: np.ndarray
    frames: np.ndarray
    patches: np.ndarray | None
    directory: Path = field(default_factory=Path)
    raw: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.coarse)

    def strip_jpeg(self, row: int) -> bytes:
        offsets = self.directory / "strips.npy"
        if not offsets.is_file():  # a segment written by format 1: one file per row
            return (self.directory / "strips" / f"{row}.jpg").read_bytes()
        start, stop = np.load(offsets, mmap_mode="r")[row : row + 2]
        with open(self.directory / "strips.bin", "rb") as handle:
            handle.seek(int(start))
            return handle.read(int(stop - start))


def new_name(generation: int) -> str:
    return f"seg-{generation:06d}-{uuid.uuid4().hex[:6]}"


def open_segment(folder: Path) -> Segment:
    """A segment's arrays, memory-mapped; an unreadable one is an IndexFormatError."""
    try:
        optional = {part: folder / f"{part}.npy" for part in ("patches", "raw")}
        return Segment(
            coarse=np.load(folder / "coarse.npy", mmap_mode="r"),
            frames=np.load(folder / "frames.npy", mmap_mode="r"),
            patches=np.load(optional["patches"], mmap_mode="r") if optional["patches"].exists() else None,
            raw=np.load(optional["raw"], mmap_mode="r") if optional["raw"].exists() else None,
            directory=folder,
        )
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"segment {folder} is unreadable ({exc})") from None


def _publish(tmp: Path, target: Path) -> None:
    for path in tmp.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(tmp)
    os.rename(tmp, target)
    fsync_dir(target.parent)


def _save(folder: Path, name: str, array: np.ndarray) -> None:
    with open(folder / f"{name}.npy", "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def write_segment(root: Path, name: str, header: IndexHeader, moments: Sequence[MomentFeatures]) -> Path:
    """A new segment folder `root/name` holding `moments` in order (row i = moments[i])."""
    tmp = root / f"{TMP_PREFIX}{name}"
    tmp.mkdir(parents=True)
    try:
        _save(tmp, "coarse", np.stack([m.coarse for m in moments]).astype(np.float32))
        _save(tmp, "frames", np.stack([m.frames for m in moments]).astype(np.float16))
        if header.store_patches:
            _save(tmp, "patches", np.stack([m.patches for m in moments]).astype(np.float16))
        if header.raw_dim:
            _save(tmp, "raw", np.stack([m.raw for m in moments]).astype(np.float16))
        strips = [m.strip_jpeg for m in moments]
        write_synced(tmp / "strips.bin", b"".join(strips))
        _save(tmp, "strips", np.concatenate([[0], np.cumsum([len(s) for s in strips])]).astype(np.int64))
        _publish(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / name


def _copy_chunked(out: np.ndarray, start: int, part: np.ndarray, handle) -> None:
    """Copy `part` into `out` from row `start` a CHUNK_BYTES block at a time, syncing each block,
    so a merge never holds much unwritten data that a commit's fsync would have to wait for."""
    step = max(1, CHUNK_BYTES // max(1, part[:1].nbytes))
    for first in range(0, len(part), step):
        stop = min(len(part), first + step)
        out[start + first : start + stop] = part[first:stop]
        out.flush()
        os.fdatasync(handle.fileno())


def concatenate_arrays(tmp: Path, sources: Sequence[Path], names: Iterable[str]) -> None:
    """For each npy name present in every source, one npy in `tmp` of the sources' rows in order."""
    for name in names:
        paths = [source / f"{name}.npy" for source in sources]
        if not all(p.is_file() for p in paths):
            continue
        parts = [np.load(p, mmap_mode="r") for p in paths]
        out = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=parts[0].dtype,
                                        shape=(sum(len(p) for p in parts), *parts[0].shape[1:]))
        with open(tmp / f"{name}.npy", "rb+") as handle:
            start = 0
            for part in parts:
                _copy_chunked(out, start, part, handle)
                start += len(part)
        del out


def link_segment(source: Path, target: Path) -> None:
    """A segment of another index under a new name here: hard links (same file system) or copies,
    assembled under a temporary name and published by one rename like a written segment."""
    tmp = target.parent / f"{TMP_PREFIX}{target.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, tmp, copy_function=_link_or_copy)
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _strips(folder: Path) -> tuple[bytes, np.ndarray]:
    """A segment's strip bytes and offsets [n + 1] (a format-1 segment's files, read and joined)."""
    if (folder / "strips.npy").is_file():
        return (folder / "strips.bin").read_bytes(), np.load(folder / "strips.npy")
    segment = open_segment(folder)
    blobs = [segment.strip_jpeg(row) for row in range(len(segment))]
    return b"".join(blobs), np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)


def merge_segments(root: Path, name: str, sources: Sequence[Path]) -> Path:
    """A new segment `root/name` whose rows are the sources' rows, source after source."""
    tmp = root / f"{TMP_PREFIX}{name}"
    tmp.mkdir(parents=True)
    try:
        concatenate_arrays(tmp, sources, ARRAYS)
        offsets, base = [np.zeros(1, np.int64)], 0
        with open(tmp / "strips.bin", "wb") as out:
            for source in sources:
                blob, starts = _strips(source)
                out.write(blob)
                offsets.append(base + starts[1:])
                base += len(blob)
        _save(tmp, "strips", np.concatenate(offsets))
        _publish(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / name


def prefetch_rows(array: np.ndarray, rows: Sequence[int]) -> None:
    """Ask the kernel for the pages of a few rows of a memory-mapped array at once (MADV_WILLNEED),
    so their reads from disk overlap instead of faulting in one after another: at 1M moments the
    re-rank states (21 GB) do not fit the page cache, and 200 candidates are 200 random reads."""
    mapping = getattr(array, "base", None)
    if not isinstance(array, np.memmap) or not isinstance(mapping, mmap.mmap) or len(rows) > PREFETCH_MAX_ROWS:
        return
    row_bytes = array.strides[0]
    data_start = array.offset % mmap.ALLOCATIONGRANULARITY  # where np.memmap's mapping puts row 0
    for row in rows:
        start = data_start + int(row) * row_bytes
        aligned = start - start % mmap.PAGESIZE
        mapping.madvise(mmap.MADV_WILLNEED, aligned, start + row_bytes - aligned)


def gather(locations: Sequence[tuple[str, int]], array_of: Callable[[str], np.ndarray]) -> np.ndarray:
    """float32 [n, ...]: row `r` of segment `s`'s array for each (s, r), one fancy-index per segment
    (a few rows are prefetched first)."""
    by_segment: dict[str, list[int]] = {}
    for position, (segment, _) in enumerate(locations):
        by_segment.setdefault(segment, []).append(position)
    if len(locations) <= PREFETCH_MAX_ROWS:
        for segment, positions in by_segment.items():
            prefetch_rows(array_of(segment), [locations[p][1] for p in positions])
    out = None
    for segment, positions in by_segment.items():
        picked = np.asarray(array_of(segment)[[locations[p][1] for p in positions]], dtype=np.float32)
        if out is None:
            out = np.empty((len(locations), *picked.shape[1:]), np.float32)
        out[positions] = picked
    return out
