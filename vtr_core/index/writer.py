"""Writing an index: one writer at a time (a file lock), additions and removals buffered until
`commit` publishes them as a new generation.

A commit writes a new segment (to a temporary name, then renamed), then the faiss file, then the
manifest (temp + fsync + rename). The manifest is the only thing that makes work visible, so a
process killed at any point leaves the previous generation whole and readable; stray files of an
unfinished commit are swept by the next writer.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from vtr_core.contracts import check_header
from vtr_core.errors import IndexFormatError, IndexMismatchError
from vtr_core.index.head_store import sweep_head_stores
from vtr_core.index.manifest import MANIFEST, faiss_module, write_faiss, write_manifest
from vtr_core.index.reader import VideoIndex
from vtr_core.index.records import IndexHeader, VideoFeatures, VideoRecord
from vtr_core.storage import (
    atomic_save_npy,
    fsync_dir,
    remove_stale_temps,
    stale_temps,
    write_synced,
)

# A segment whose live share of rows falls below this is rewritten at the next commit.
COMPACT_BELOW = 0.5


@contextmanager
def open_writer(directory: str | os.PathLike, header: IndexHeader) -> Iterator["IndexWriter"]:
    """Open (or create) an index for writing under an exclusive lock."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise IndexFormatError(f"index {directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    leftovers = {".lock", "faiss", "heads", "segments"} | {p.name for p in stale_temps(directory / MANIFEST)}
    if not VideoIndex.exists(directory) and any(p.name not in leftovers for p in directory.iterdir()):
        raise IndexFormatError(f"index {directory}: directory is not empty and holds no {MANIFEST}")
    with open(directory / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexFormatError(f"index {directory} is being written by another process") from None
        if not VideoIndex.exists(directory):
            empty = np.zeros((0, header.embed_dim), np.float32)
            write_manifest(directory, 0, header, [], write_faiss(directory, 0, empty, header.faiss_factory))
        index = VideoIndex.open(directory)
        check_header(index.header, f"index {directory}", header)
        writer = IndexWriter(index)
        writer.sweep()
        yield writer
        fcntl.flock(lock, fcntl.LOCK_UN)


class IndexWriter:
    """Buffers additions and removals; `commit` makes them durable and visible at once."""

    def __init__(self, index: VideoIndex):
        self.index = index
        self.directory = index.directory
        self.header = index.header
        self._pending: dict[str, VideoFeatures] = {}
        self._removed: set[str] = set()
        self._touched: dict[str, int] = {}

    @property
    def videos(self) -> list[VideoRecord]:
        return self.index.videos

    def add(self, item: VideoFeatures) -> None:
        T, D = self.header.num_frames, self.header.embed_dim
        if item.frames.shape != (T, D) or item.coarse.shape != (D,):
            raise IndexMismatchError(
                f"{item.record.path}: features of shape {item.frames.shape} do not fit index ({T}, {D})"
            )
        if self.header.store_patches and (item.patches is None or item.patches.shape != (T, self.header.num_patches, D)):
            raise IndexMismatchError(f"{item.record.path}: patch tokens missing or of the wrong shape")
        if self.header.raw_dim and (item.raw is None or item.raw.shape != (T, self.header.raw_dim)):
            raise IndexMismatchError(f"{item.record.path}: raw features missing or of the wrong shape")
        self._pending[item.record.video_id] = item
        self._removed.discard(item.record.video_id)

    def remove(self, video_id: str) -> None:
        self.index.row_of(video_id)  # raises KeyError naming the index
        self._removed.add(video_id)
        self._pending.pop(video_id, None)

    def touch(self, video_id: str, mtime_ns: int) -> None:
        """Record a new mtime for a file whose content hash did not change."""
        self._touched[video_id] = mtime_ns

    @property
    def pending(self) -> int:
        """Videos added since the last commit."""
        return len(self._pending)

    @property
    def dirty(self) -> bool:
        return bool(self._pending or self._removed or self._touched)

    def _compaction_candidates(self, kept: list[VideoRecord]) -> set[str]:
        live: dict[str, int] = {}
        for record in kept:
            live[record.segment] = live.get(record.segment, 0) + 1
        sparse = set()
        for name in {v.segment for v in self.index.videos}:
            total = len(self.index.segment(name).coarse)
            if live.get(name, 0) < COMPACT_BELOW * total:
                sparse.add(name)
        return sparse

    def commit(self) -> VideoIndex:
        if not self.dirty:
            return self.index
        old = self.index
        generation = old.generation + 1
        replaced = set(self._pending) | self._removed
        kept = [
            dataclasses.replace(v, mtime_ns=self._touched.get(v.video_id, v.mtime_ns))
            for v in old.videos
            if v.video_id not in replaced
        ]
        additions = list(self._pending.values())

        # Rows of nearly empty segments move into the new segment, so removals free disk space.
        sparse = self._compaction_candidates(kept) if self._removed or any(v in old for v in self._pending) else set()
        moved = [v for v in kept if v.segment in sparse]
        if moved:
            kept = [v for v in kept if v.segment not in sparse]
            additions = [self._reload(old, record) for record in moved] + additions

        new_records = self._write_segment(generation, additions) if additions else []
        videos = kept + new_records
        only_appended = len(kept) == len(old.videos)
        if only_appended and new_records:
            faiss_file = write_faiss(self.directory, generation, np.stack([a.coarse for a in additions]),
                                      self.header.faiss_factory, base=faiss_module().clone_index(old.faiss_index))
        else:
            vectors = np.concatenate([old.coarse_vectors([old.row_of(v.video_id) for v in kept]),
                                      np.stack([a.coarse for a in additions]) if additions else
                                      np.zeros((0, self.header.embed_dim), np.float32)])
            faiss_file = write_faiss(self.directory, generation, vectors, self.header.faiss_factory)
        write_manifest(self.directory, generation, self.header, videos, faiss_file)

        self.index = VideoIndex.open(self.directory)
        self._pending.clear()
        self._removed.clear()
        self._touched.clear()
        self.sweep()
        return self.index

    def _reload(self, old: VideoIndex, record: VideoRecord) -> VideoFeatures:
        row = old.row_of(record.video_id)
        return VideoFeatures(
            record=record,
            coarse=old.coarse_vectors([row])[0],
            frames=old.frame_features([row])[0],
            patches=old.patch_tokens([row])[0] if self.header.store_patches else None,
            strip_jpeg=old.frame_strip_jpeg(row),
            raw=old.raw_features([row])[0] if self.header.raw_dim else None,
        )

    def _write_segment(self, generation: int, items: list[VideoFeatures]) -> list[VideoRecord]:
        name = f"seg-{generation:06d}-{uuid.uuid4().hex[:6]}"
        root = self.directory / "segments"
        tmp = root / f".tmp-{name}"
        (tmp / "strips").mkdir(parents=True)
        atomic_save_npy(tmp / "coarse.npy", np.stack([i.coarse for i in items]).astype(np.float32))
        atomic_save_npy(tmp / "frames.npy", np.stack([i.frames for i in items]).astype(np.float16, copy=False))
        if self.header.store_patches:
            atomic_save_npy(tmp / "patches.npy", np.stack([i.patches for i in items]).astype(np.float16, copy=False))
        if self.header.raw_dim:
            atomic_save_npy(tmp / "raw.npy", np.stack([i.raw for i in items]).astype(np.float16, copy=False))
        for row, item in enumerate(items):
            write_synced(tmp / "strips" / f"{row}.jpg", item.strip_jpeg)
        fsync_dir(tmp / "strips")
        fsync_dir(tmp)
        os.rename(tmp, root / name)
        fsync_dir(root)
        return [dataclasses.replace(item.record, segment=name, row=row) for row, item in enumerate(items)]

    def sweep(self) -> None:
        """Delete what no manifest refers to: unfinished commits, dead segments and their head
        stores, old faiss files, manifest temporaries of writers killed mid-write."""
        remove_stale_temps(self.directory / MANIFEST)
        live_segments = {v.segment for v in self.index.videos}
        segments = self.directory / "segments"
        if segments.is_dir():
            for child in segments.iterdir():
                if child.name not in live_segments:
                    shutil.rmtree(child, ignore_errors=True)
        sweep_head_stores(self.directory, live_segments)
        faiss_dir = self.directory / "faiss"
        if faiss_dir.is_dir():
            # keep the previous generation too: a reader that has just read the old manifest
            # may be about to open its faiss file
            keep = {self.index.faiss_file, f"coarse-{self.index.generation - 1:06d}.faiss"}
            for child in faiss_dir.iterdir():
                if child.name not in keep:
                    child.unlink(missing_ok=True)
