"""Writing an index: one writer at a time (a file lock), additions and removals buffered until
`commit` publishes them as a new generation.

A commit writes one new segment folder (temporary name, fsync, rename), then applies one catalogue
transaction: the transaction alone makes the commit visible, so a process killed at any point
leaves the previous generation whole; a segment no catalogue row names is swept by the next writer.
Its cost depends on the batch, not on the index: no file of the whole index is rewritten. Small
segments are merged in the background (vtr_core.index.merging); segments whose live rows fall
below COMPACT_BELOW are rewritten at the next commit that removes something.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from vtr_core.contracts import check_header
from vtr_core.errors import IndexFormatError, IndexMismatchError
from vtr_core.index.catalogue import CATALOGUE, Catalogue, CommitBatch
from vtr_core.index.head_store import HEADS_DIR, sweep_head_stores
from vtr_core.index.legacy import (
    FAISS_V1,
    MANIFEST_V1,
    convert_v1,
    is_v1_index,
    remove_v1_leftovers,
    v1_header,
)
from vtr_core.index.merging import BackgroundMerge, plan_merge
from vtr_core.index.reader import VideoIndex
from vtr_core.index.records import IndexHeader, MomentFeatures, MomentRecord, VideoFeatures, VideoRecord
from vtr_core.index.segments import SEGMENTS_DIR, link_segment, new_name, write_segment
from vtr_core.storage import remove_stale_temps

# A segment whose live share of rows falls below this is rewritten at the next commit that removes.
COMPACT_BELOW = 0.5
KNOWN_FILES = {".lock", CATALOGUE, f"{CATALOGUE}-wal", f"{CATALOGUE}-shm", SEGMENTS_DIR, HEADS_DIR,
               MANIFEST_V1, FAISS_V1}


@contextmanager
def open_writer(directory: str | os.PathLike, header: IndexHeader, merge: bool = True) -> Iterator["IndexWriter"]:
    """Open (or create) an index for writing under an exclusive lock; a format-1 index is converted."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise IndexFormatError(f"index {directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    strays = [p for p in directory.iterdir() if p.name not in KNOWN_FILES and not p.name.startswith(f".{CATALOGUE}")]
    if not VideoIndex.exists(directory) and not is_v1_index(directory) and strays:
        raise IndexFormatError(f"index {directory}: directory is not empty and holds no {CATALOGUE}")
    with open(directory / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexFormatError(f"index {directory} is being written by another process") from None
        if not VideoIndex.exists(directory):
            if is_v1_index(directory):
                convert_v1(directory)
            else:
                Catalogue.create(directory, header)
        writer = IndexWriter(directory, Catalogue(directory, writable=True), merge=merge)
        try:
            check_header(writer.header, f"index {directory}", header)
            writer.catalogue.purge(before=writer.index.generation + 1)  # the last writer's readers are gone
            writer.sweep()
            writer.start_merge()  # merges a killed writer left undone
            yield writer
            writer.finish()
        finally:
            writer.close()
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade_index(directory: str | os.PathLike) -> bool:
    """Convert a format-1 index in place (under the writer's lock); whether there was one to convert."""
    directory = Path(directory)
    if VideoIndex.exists(directory) or not is_v1_index(directory):
        return False
    with open_writer(directory, v1_header(directory)):
        pass
    return True


class IndexWriter:
    """Buffers additions and removals; `commit` makes them durable and visible at once."""

    def __init__(self, directory: Path, catalogue: Catalogue, merge: bool = True):
        self.directory = directory
        self.catalogue = catalogue
        self.header = catalogue.header
        # views this writer hands out outlive it: they read through a connection of their own
        self._reader = Catalogue(directory, immutable=False)
        self.index = VideoIndex(directory, self._reader)
        self.merge_enabled = merge
        self._merge: BackgroundMerge | None = None
        self._pending: dict[str, VideoFeatures] = {}
        self._removed: set[str] = set()
        self._touched: dict[str, int] = {}
        self._adopted: list[tuple[VideoIndex, dict[str, str]]] = []

    @property
    def videos(self) -> list[VideoRecord]:
        return self.index.videos

    def add(self, item: VideoFeatures) -> None:
        T, D = self.header.num_frames, self.header.embed_dim
        if not item.moments:
            raise IndexMismatchError(f"{item.record.path}: no moments to store")
        for moment in item.moments:
            self._check(item.record.path, moment, T, D)
        self._pending[item.record.video_id] = item
        self._removed.discard(item.record.video_id)

    def _check(self, path: str, m: MomentFeatures, T: int, D: int) -> None:
        if m.frames.shape != (T, D) or m.coarse.shape != (D,):
            raise IndexMismatchError(f"{path}: features of shape {m.frames.shape} do not fit index ({T}, {D})")
        if self.header.store_patches and (m.patches is None or m.patches.shape != (T, self.header.num_patches, D)):
            raise IndexMismatchError(f"{path}: patch tokens missing or of the wrong shape")
        if self.header.raw_dim and (m.raw is None or m.raw.shape != (T, self.header.raw_dim)):
            raise IndexMismatchError(f"{path}: raw features missing or of the wrong shape")
        if len(m.frame_times_s) != T or not m.end_s >= m.start_s:
            raise IndexMismatchError(f"{path}: a moment needs {T} frame times and end >= start")

    def adopt(self, source: VideoIndex) -> int:
        """Stage every video of another index with the same header (a shard built elsewhere) for the
        next commit: its segments are linked (copied across file systems) under new names, so the
        commit costs the catalogue rows, not the features. Returns how many videos were staged."""
        check_header(self.header, f"index {source.directory}", source.header)
        names = {}
        for name in source.segment_names:
            names[name] = new_name(self.index.generation + 1)
            link_segment(source.directory / SEGMENTS_DIR / name, self.directory / SEGMENTS_DIR / names[name])
        self._adopted.append((source, names))
        for video in source.videos:
            self._pending.pop(video.video_id, None)
            self._removed.discard(video.video_id)
        return source.num_videos

    def remove(self, video_id: str) -> None:
        if not self.catalogue.current([video_id]):
            raise KeyError(f"no video {video_id!r} in index {self.directory}")
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
        return bool(self._pending or self._removed or self._touched or self._adopted)

    # -- committing ------------------------------------------------------------------------------
    def commit(self) -> VideoIndex:
        merged = self._merge.done() if self._merge is not None else False
        if not self.dirty and not merged:
            return self.index
        old = self.index
        batch = CommitBatch(generation=old.generation + 1, touched=dict(self._touched))
        adopted = {v.video_id for source, _ in self._adopted for v in source.videos}
        batch.removed_videos = sorted(self.catalogue.current(set(self._pending) | self._removed | adopted))
        new_moments: list[tuple[MomentRecord, MomentFeatures]] = []
        for item in self._pending.values():
            batch.videos.append(item.record)
            new_moments += [(MomentRecord(item.record.video_id, m.start_s, m.end_s, m.frame_times_s), m)
                            for m in item.moments]
        busy = self._merge.names if self._merge is not None else set()
        if batch.removed_videos:
            self._compact(old, batch, busy)
        if new_moments:
            name = new_name(batch.generation)
            write_segment(self.directory / SEGMENTS_DIR, name, self.header, [m for _, m in new_moments])
            batch.new_segments.append((name, len(new_moments), None))
            for row, (record, _) in enumerate(new_moments):
                record.segment, record.row = name, row
                batch.moments.append(record)
        for source, names in self._adopted:
            batch.videos += source.videos
            batch.moments += [replace(m, segment=names[m.segment]) for m in source.moments]
            segments = source.catalogue.segments(source.generation)
            batch.new_segments += [(names[n], rows, None) for n, rows, _ in segments]
        if merged:
            self._publish_merge(batch)
        self.catalogue.commit(batch)
        self.catalogue.purge(before=batch.generation)
        self.index = VideoIndex(self.directory, self._reader, batch.generation)
        self._clear()
        self.sweep()
        self.start_merge()
        return self.index

    def _clear(self) -> None:
        self._pending.clear()
        self._removed.clear()
        self._touched.clear()
        self._adopted.clear()

    def _compact(self, old: VideoIndex, batch: CommitBatch, busy: set[str]) -> None:
        """Rows of nearly empty segments move into a segment of their own, so removals free disk."""
        live = self.catalogue.live_rows_by_segment(old.generation)
        for moment in self.catalogue.moments_of(batch.removed_videos):
            live[moment.segment] = live.get(moment.segment, 0) - 1
        sparse = [name for name, rows, _ in self.catalogue.segments(old.generation)
                  if name not in busy and live.get(name, 0) < COMPACT_BELOW * rows]
        if not sparse:
            return
        gone = set(batch.removed_videos)
        moving = [m for m in self.catalogue.live_moments_in(sparse, old.generation) if m.video_id not in gone]
        batch.dropped_segments += sparse
        if moving:
            name = new_name(batch.generation)
            write_segment(self.directory / SEGMENTS_DIR, name, self.header, [self._reload(old, m) for m in moving])
            batch.new_segments.append((name, len(moving), None))
            batch.moved += [(m.moment_id, name, row) for row, m in enumerate(moving)]

    def _reload(self, old: VideoIndex, moment: MomentRecord) -> MomentFeatures:
        segment = old.segment(moment.segment)
        row = moment.row

        def part(array):
            return None if array is None else array[row]

        return MomentFeatures(moment.start_s, moment.end_s, moment.frame_times_s, segment.coarse[row],
                              segment.frames[row], part(segment.patches), segment.strip_jpeg(row), part(segment.raw))

    def start_merge(self) -> None:
        """Merge the oldest segments of a full tier in the background, if one is full and none runs."""
        if not self.merge_enabled or self._merge is not None:
            return
        picked = plan_merge([(n, r) for n, r, _ in self.catalogue.segments(self.index.generation)])
        if picked:
            self._merge = BackgroundMerge(self.directory, picked, self.index.generation + 1)

    def _publish_merge(self, batch: CommitBatch) -> None:
        merge, self._merge = self._merge, None
        result = merge.result()
        batch.new_segments.append((result.name, result.rows, result.merged_from))
        batch.relocated += [(source, result.name, offset) for source, offset in zip(result.sources, result.offsets)]
        batch.dropped_segments += result.sources

    def finish(self) -> None:
        """Publish the merges still running (waiting for them); what was never committed is dropped."""
        self._clear()
        while self._merge is not None:
            self._merge.wait()
            self.commit()

    def close(self) -> None:
        """Release the catalogue; an unpublished merge is abandoned (swept by the next writer)."""
        if self._merge is not None:
            self._merge.wait()
            self._merge = None
        self.catalogue.close()

    def sweep(self) -> None:
        """Delete what no catalogue row refers to: unfinished commits and merges, dropped segments
        and their head stores, what format 1 left, temporaries of writers killed mid-write."""
        remove_stale_temps(self.directory / CATALOGUE)
        remove_v1_leftovers(self.directory)
        keep = self.catalogue.known_segments() | (self._merge.names if self._merge is not None else set())
        segments = self.directory / SEGMENTS_DIR
        for child in segments.iterdir() if segments.is_dir() else ():
            if child.name not in keep and not (self._merge and child.name.endswith(self._merge.planned.name)):
                shutil.rmtree(child, ignore_errors=True)
        sweep_head_stores(self.directory, keep, self.catalogue.merged_sources())
        for staging in self.directory.glob(f".{CATALOGUE}.v1-*"):  # a format-1 conversion killed midway
            shutil.rmtree(staging, ignore_errors=True)
