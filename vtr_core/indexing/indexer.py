"""Indexing a folder of videos: scan, decode ahead in workers, encode in batches, commit.

What a run must decode (new and changed files, not unchanged ones, aliases or files outside the
allowed folders) is planned first (vtr_core.indexing.scan); this module runs the plan. Decoding, hashing and thumbnails run in worker threads (CPU encoder) or processes (GPU encoder)
ahead of the encoder (vtr_core.indexing.workers), so a GPU is not left waiting. Work is committed every
`commit_every` videos, and no more often than every `commit_interval_s`, so a fast GPU run does
not spend its time in fsync: a killed run keeps everything committed before, and the next run
skips it (same size and mtime, or same content hash).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from vtr_core.backbones import Backbone
from vtr_core.contracts import check_settings
from vtr_core.errors import VideoError, VtrError
from vtr_core.index import IndexHeader, MomentFeatures, VideoFeatures, VideoIndex, VideoRecord, upgrade_index
from vtr_core.indexing.encoding import encode_moments
from vtr_core.indexing.scan import IndexPlan, plan_index, scan_videos
from vtr_core.indexing.workers import (
    DecodedVideo,
    decode_ahead,
    default_decode_workers,
    moment_strip,
    prefetched,
    stream_moments,
)
from vtr_core.video.moments import MomentFrames, MomentPolicy
from vtr_core.video.stream import VideoInfo

if TYPE_CHECKING:
    from vtr_core.index.writer import IndexWriter

ProgressFn = Callable[[int, int, str], None]  # (done, total, current item)


@dataclass
class IndexReport:
    """What one indexing run did; `failed` holds (path, one-line reason)."""

    index_dir: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line per file indexed only in part (cut short)
    aliases: list[str] = field(default_factory=list)  # symlinks to a file this run already saw: indexed once
    touched: dict[str, int] = field(default_factory=dict)  # video id -> new mtime_ns: same content, not re-encoded
    seconds: float = 0.0
    frames_encoded: int = 0
    # where the wall time went, in the main thread: waiting for decoded videos (decode-bound when
    # large), encoding (on a GPU this includes the frames' transfer) and storing/committing
    wait_s: float = 0.0
    encode_s: float = 0.0
    store_s: float = 0.0
    decode_workers: int = 0
    decode_processes: bool = False

    @property
    def videos_per_second(self) -> float:
        done = len(self.added) + len(self.updated)
        return done / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"indexed {len(self.added)} new and {len(self.updated)} changed videos, {self.unchanged} unchanged, "
            f"{len(self.removed)} removed, {len(self.failed)} failed, in {self.seconds:.1f} s "
            f"({self.videos_per_second:.2f} videos/s, {self.frames_encoded} frames)"
            + (f"; {len(self.aliases)} links to files already indexed skipped" if self.aliases else "")
        )


def index_header(backbone: Backbone, num_frames: int, store_patches: bool, faiss_factory: str,
                 moments: str | None = None) -> IndexHeader:
    """What the index records of the backbone and the settings its features were made with."""
    return IndexHeader(
        backbone_spec=backbone.spec,
        backbone_id=backbone.id,
        embed_dim=backbone.embed_dim,
        num_frames=num_frames,
        patch_grid=list(backbone.patch_grid) if backbone.patch_grid else None,
        store_patches=store_patches and backbone.patch_grid is not None,
        faiss_factory=faiss_factory,
        raw_dim=backbone.raw_dim,
        moments=MomentPolicy.parse(moments).spec if moments else "",
    )


def moment_setting(index_dir: str | os.PathLike, asked: str | MomentPolicy | None) -> str:
    """The moment policy a run indexes with: the one asked for (another than the existing index's
    is an error: its moments would not be comparable), else the index's own, else the default."""
    asked_spec = (asked if isinstance(asked, MomentPolicy) else MomentPolicy.parse(asked)).spec if asked else None
    if not VideoIndex.exists(index_dir):
        return asked_spec or IndexHeader("", "", 0, 0, None, False).moment_spec
    header = VideoIndex.open(index_dir).header
    check_settings(header, f"index {index_dir}", moment_spec=asked_spec)
    return header.moments  # as stored ("" for an index made before moment search): headers must match


def _decode_settings(backbone: Backbone, workers: int | None, processes: bool | None) -> tuple[int, bool]:
    """(decode workers, whether they are processes): one per core; processes for a GPU encoder."""
    workers = workers or default_decode_workers()
    if processes is None:  # a GPU encoder outruns threads that share the GIL with its feeder
        processes = backbone.device.type == "cuda" and workers > 2
    return workers, processes


def _video_record(decoded: DecodedVideo, info: VideoInfo, path: str) -> VideoRecord:
    """The index's record of a decoded file (`path` relative to the index folder)."""
    return VideoRecord(
        video_id=decoded.video_id,
        path=path,
        size=decoded.stat.st_size,
        mtime_ns=decoded.stat.st_mtime_ns,
        sha256=decoded.sha256,
        duration_s=round(info.duration_s, 3),
        fps=round(info.fps, 3),
        num_source_frames=info.num_source_frames,
        width=info.width,
        height=info.height,
    )


@dataclass
class _BatchEncoder:
    """Decoded videos, gathered into batches of about `batch_frames` frames, encoded and added."""

    backbone: Backbone
    header: IndexHeader
    writer: IndexWriter
    plan: IndexPlan
    index_root: Path
    report: IndexReport
    batch_frames: int
    batch: list[DecodedVideo] = field(default_factory=list)

    def take(self, decoded: DecodedVideo) -> None:
        """Batch a new or changed video (a long one is streamed); for one only touched, record its new mtime."""
        known = self.plan.known.get(self.plan.resolved[decoded.path])
        if known is not None and known.sha256 == decoded.sha256:
            # touched but identical: nothing to re-encode, but record the new mtime
            self.report.unchanged += 1
            self.report.touched[known.video_id] = decoded.stat.st_mtime_ns
            self.writer.touch(known.video_id, decoded.stat.st_mtime_ns)
            return
        if decoded.streamed:
            self.flush()
            self.stream(decoded)
            return
        self.batch.append(decoded)
        if sum(len(d.moments) for d in self.batch) * self.header.num_frames >= self.batch_frames:
            self.flush()

    def flush(self) -> None:
        """Encode the batch (one encoder call per frame size) and add its videos to the writer."""
        if not self.batch:
            return
        moments = [m for d in self.batch for m in d.moments]
        features = self.encode(moments, [strip for d in self.batch for strip in d.strips])
        for decoded in self.batch:
            self.add(decoded, decoded.info, features[: len(decoded.moments)])
            features = features[len(decoded.moments):]
        self.batch.clear()

    def stream(self, decoded: DecodedVideo) -> None:
        """A long file: its moments decoded in a background thread, a chunk ahead of the encoder
        (memory bounded by a chunk, not the file), encoded a batch at a time, then added as one video."""
        stream = stream_moments(decoded, self.header.moment_spec, self.header.num_frames)
        chunks = prefetched((chunk, [moment_strip(m) for m in chunk]) for chunk in stream.chunks())
        features: list[MomentFeatures] = []
        per_batch = max(1, self.batch_frames // self.header.num_frames)
        try:
            waited_from = time.perf_counter()
            for chunk, strips in chunks:
                self.report.wait_s += time.perf_counter() - waited_from
                for start in range(0, len(chunk), per_batch):
                    features += self.encode(chunk[start : start + per_batch], strips[start : start + per_batch])
                waited_from = time.perf_counter()
        except VideoError as exc:
            self.report.failed.append((str(decoded.path), str(exc)))
            return
        decoded.warning = stream.warning
        self.add(decoded, stream.info, features)

    def encode(self, moments: list[MomentFrames], strips: list[bytes]) -> list[MomentFeatures]:
        began = time.perf_counter()
        features = encode_moments(self.backbone, moments, strips, self.header)
        self.report.encode_s += time.perf_counter() - began
        self.report.frames_encoded += len(moments) * self.header.num_frames
        return features

    def add(self, decoded: DecodedVideo, info: VideoInfo, moments: list[MomentFeatures]) -> None:
        """Hand one video's moments to the writer (committed at the pacer's pace)."""
        began = time.perf_counter()
        real = self.plan.resolved[decoded.path]
        record = _video_record(decoded, info, os.path.relpath(real, self.index_root))
        self.writer.add(VideoFeatures(record, moments))
        (self.report.updated if real in self.plan.known else self.report.added).append(decoded.video_id)
        if decoded.warning:
            self.report.warnings.append(decoded.warning)
        self.report.store_s += time.perf_counter() - began


@dataclass
class _CommitPacer:
    """Commits after `every` videos and no sooner than `interval_s` after the last commit, so a fast
    GPU run does not spend its time in fsync; the time spent committing counts as storing."""

    writer: IndexWriter
    report: IndexReport
    every: int
    interval_s: float
    last: float = field(default_factory=time.perf_counter)

    def due(self) -> bool:
        """Whether enough videos wait, and long enough has passed, for the next commit."""
        return self.writer.pending >= self.every and time.perf_counter() - self.last >= self.interval_s

    def commit(self) -> None:
        began = time.perf_counter()
        self.writer.commit()
        self.last = time.perf_counter()
        self.report.store_s += self.last - began


def _encode_and_commit(jobs: list[tuple[Path, str, int]], encoder: _BatchEncoder, pacer: _CommitPacer,
                       decode_workers: int, decode_processes: bool, progress: ProgressFn | None) -> None:
    """Take the decode workers' videos in order, encode them in batches, commit at the pacer's pace."""
    report = encoder.report
    done = 0
    waited_from = time.perf_counter()
    for decoded in decode_ahead(jobs, decode_workers, decode_processes):
        report.wait_s += time.perf_counter() - waited_from
        done += 1
        if decoded.error:
            report.failed.append((str(decoded.path), decoded.error))
        else:
            encoder.take(decoded)
        if progress:
            progress(done, len(jobs), decoded.path.name)
        if pacer.due():
            encoder.flush()
            pacer.commit()
        waited_from = time.perf_counter()
    encoder.flush()
    pacer.commit()


def index_folder(
    video_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    backbone: Backbone,
    num_frames: int = 12,
    store_patches: bool = True,
    faiss_factory: str = "auto",
    prune: bool = False,
    commit_every: int = 64,
    batch_frames: int | None = None,
    decode_workers: int | None = None,
    decode_processes: bool | None = None,
    commit_interval_s: float = 2.0,
    confine_to: Sequence[str | os.PathLike] | None = None,
    progress: ProgressFn | None = None,
    select: Callable[[str], bool] | None = None,
    plan_against: str | os.PathLike | None = None,
    moments: str | MomentPolicy | None = None,
) -> IndexReport:
    """Add new and changed videos under `video_dir` to the index (created if missing).

    Each file is cut into moments by the `moments` policy (vtr_core.video.moments: shots or
    windows; a file up to the policy's length is one moment), fixed when the index is created.

    With `confine_to`, a file whose real path (symlinks followed) leaves those folders is
    refused: a link inside an allowed folder must not index, and so serve, a file outside it.
    A shard of a sharded build (vtr_core.indexing.sharded) passes `select`, which keeps the files
    this process takes (by path relative to `video_dir`, posix; video ids are still chosen over
    every file), and `plan_against`, the main index: its records decide what is unchanged, and
    stored paths are relative to it, so the shard's records need no rewriting when merged.
    """
    if prune and plan_against is not None:
        raise ValueError("prune removes from the index planned against: prune there, not in a shard")
    started = time.perf_counter()
    root, index_dir = Path(video_dir), Path(index_dir)
    report = IndexReport(index_dir=str(index_dir))
    header = index_header(backbone, num_frames, store_patches, faiss_factory,
                          moment_setting(plan_against or index_dir, moments))
    if batch_frames is None:
        batch_frames = 512 if backbone.device.type == "cuda" else 48
    decode_workers, decode_processes = _decode_settings(backbone, decode_workers, decode_processes)
    report.decode_workers, report.decode_processes = decode_workers, decode_processes
    paths = scan_videos(root)

    with VideoIndex.writer(index_dir, header) as writer:
        index_root = Path(plan_against or index_dir).resolve()
        indexed = writer.videos if plan_against is None else _indexed_videos(plan_against)
        plan = plan_index(root, paths, indexed, index_root, confine_to, prune, select)
        report.unchanged = plan.unchanged
        report.failed.extend(plan.failed)
        report.aliases.extend(plan.aliases)
        for video_id in plan.removed:
            writer.remove(video_id)
            report.removed.append(video_id)
        encoder = _BatchEncoder(backbone, header, writer, plan, index_root, report, batch_frames)
        pacer = _CommitPacer(writer, report, commit_every, commit_interval_s)
        jobs = [(path, video_id, num_frames, header.moment_spec) for path, video_id in plan.todo]
        _encode_and_commit(jobs, encoder, pacer, decode_workers, decode_processes, progress)
    report.seconds = time.perf_counter() - started
    return report


def _indexed_videos(index_dir: str | os.PathLike) -> list[VideoRecord]:
    """The records of another index, read without its lock (none when it does not exist yet)."""
    return VideoIndex.open(index_dir).videos if VideoIndex.exists(index_dir) else []


def remove_videos(index_dir: str | os.PathLike, video_ids: list[str]) -> list[str]:
    upgrade_index(index_dir)
    index = VideoIndex.open(index_dir)
    with VideoIndex.writer(index_dir, index.header) as writer:
        for video_id in video_ids:
            try:
                writer.remove(video_id)
            except KeyError as exc:
                raise VtrError(str(exc).strip("'\"")) from None
        writer.commit()
    return video_ids
