"""Indexing a folder of videos: scan, decode ahead in workers, encode in batches, commit.

Decoding, hashing and thumbnails run in worker threads (CPU encoder) or processes (GPU encoder)
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
from typing import Callable, Sequence

import numpy as np
import torch

from vtr_core.backbones import Backbone
from vtr_core.backbones.base import FrameFeatures
from vtr_core.errors import VtrError
from vtr_core.index import IndexHeader, VideoFeatures, VideoIndex, VideoRecord
from vtr_core.indexing.workers import DecodedVideo, decode_ahead, default_decode_workers
from vtr_core.methods import meanp
from vtr_core.video.decode import is_video_path

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
    aliases: list[str] = field(default_factory=list)  # symlinks to a file this run already saw: indexed once
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


def scan_videos(root: str | os.PathLike) -> list[Path]:
    """Video files under `root` (recursive, sorted), chosen by extension (`is_video_path`).

    A video named .txt is not scanned; a file named .mp4 is, whatever it holds, and one that is
    not a decodable video (empty, text, truncated, audio only, unreadable, a broken or looping
    symlink) becomes one failed line of the report. Symlinked folders are not followed: a link to
    a parent folder would walk forever.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise VtrError(f"{root}: no such folder")
    found = []
    for folder, subdirs, files in os.walk(root, followlinks=False):
        subdirs.sort()
        found.extend(Path(folder) / name for name in sorted(files) if is_video_path(name))
    return found


def resolved_path(path: Path) -> str:
    """`path` with its symlinks resolved. A symlink loop raises there (RuntimeError on Python
    3.11, OSError later) and would end the whole run; it stays as its absolute path instead, so
    the decoder reports it as one failed file."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def _video_id(path: Path, resolved: str, root: Path, taken: dict[str, str]) -> str:
    """The file stem, or the relative path without suffix when another file has that stem."""
    for candidate in (path.stem, path.relative_to(root).with_suffix("").as_posix() if path.is_relative_to(root) else resolved):
        if taken.get(candidate, resolved) == resolved:
            taken[candidate] = resolved
            return candidate
    return resolved


def encode_clips(backbone: Backbone, clips: list[np.ndarray], patch_dtype: torch.dtype = torch.float32) -> FrameFeatures:
    """The frames of several clips [T, H, W, 3], encoded in clip order (rows i*T ... i*T+T-1).

    Frames of different sizes (a 160x120 clip beside a reduced 8K one) cannot stack into one
    array: clips of each size share one encoder call, and the rows are put back in clip order.
    """
    rows_by_size: dict[tuple[int, ...], list[int]] = {}
    for i, clip in enumerate(clips):
        rows_by_size.setdefault(clip.shape[1:], []).append(i)
    parts = [backbone.encode_frames(np.concatenate([clips[i] for i in rows]), patch_dtype=patch_dtype)
             for rows in rows_by_size.values()]
    if len(parts) == 1:
        return parts[0]
    num_frames = clips[0].shape[0]
    position = np.argsort([i for rows in rows_by_size.values() for i in rows])  # clip -> place in the encoded order
    order = torch.as_tensor((position[:, None] * num_frames + np.arange(num_frames)).ravel())

    def joined(name: str) -> torch.Tensor | None:
        tensors = [getattr(part, name) for part in parts]
        return None if tensors[0] is None else torch.cat(tensors)[order]

    return FrameFeatures(frame=joined("frame"), patches=joined("patches"), raw=joined("raw"))


def index_folder(
    video_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    backbone: Backbone,
    num_frames: int = 12,
    store_patches: bool = True,
    faiss_factory: str = "Flat",
    prune: bool = False,
    commit_every: int = 64,
    batch_frames: int | None = None,
    decode_workers: int | None = None,
    decode_processes: bool | None = None,
    commit_interval_s: float = 2.0,
    confine_to: Sequence[str | os.PathLike] | None = None,
    progress: ProgressFn | None = None,
) -> IndexReport:
    """Add new and changed videos under `video_dir` to the index (created if missing).

    With `confine_to`, a file whose real path (symlinks followed) leaves those folders is
    refused: a link inside an allowed folder must not index, and so serve, a file outside it.
    """
    started = time.perf_counter()
    root = Path(video_dir)
    index_dir = Path(index_dir)
    report = IndexReport(index_dir=str(index_dir))
    header = IndexHeader(
        backbone_spec=backbone.spec,
        backbone_id=backbone.id,
        embed_dim=backbone.embed_dim,
        num_frames=num_frames,
        patch_grid=list(backbone.patch_grid) if backbone.patch_grid else None,
        store_patches=store_patches and backbone.patch_grid is not None,
        faiss_factory=faiss_factory,
        raw_dim=backbone.raw_dim,
    )
    if batch_frames is None:
        batch_frames = 512 if backbone.device.type == "cuda" else 48
    decode_workers = decode_workers or default_decode_workers()
    if decode_processes is None:  # a GPU encoder outruns threads that share the GIL with its feeder
        decode_processes = backbone.device.type == "cuda" and decode_workers > 2
    report.decode_workers, report.decode_processes = decode_workers, decode_processes
    paths = scan_videos(root)
    base = root if root.is_dir() else root.parent

    with VideoIndex.writer(index_dir, header) as writer:
        index_root = index_dir.resolve()
        by_path = {os.path.normpath(index_root / v.path): v for v in writer.videos}
        taken = {v.video_id: os.path.normpath(index_root / v.path) for v in writer.videos}
        resolved_of = {path: resolved_path(path) for path in paths}  # each file's real path, resolved once
        todo = []
        roots = [Path(r).resolve() for r in confine_to] if confine_to is not None else None
        seen: set[str] = set()
        for path in sorted(paths, key=Path.is_symlink):  # real files first: a file keeps its own name over a link's
            resolved = resolved_of[path]
            if roots is not None and not any(Path(resolved).is_relative_to(r) for r in roots):
                report.failed.append((str(path), f"{path}: links outside the folders this app may index"))
                continue
            if resolved in seen:  # a symlink to a file already listed: one file, one entry
                report.aliases.append(str(path))
                continue
            seen.add(resolved)
            known = by_path.get(resolved)
            if known is not None:
                try:
                    stat = path.stat()
                except OSError as exc:
                    report.failed.append((str(path), f"{path}: {exc.strerror}"))
                    continue
                if stat.st_size == known.size and stat.st_mtime_ns == known.mtime_ns:
                    report.unchanged += 1
                    continue
            todo.append((path, known.video_id if known else _video_id(path, resolved, base, taken), num_frames))

        if prune:
            on_disk = set(resolved_of.values())
            for resolved, record in by_path.items():
                if resolved not in on_disk and (root.is_dir() and Path(resolved).is_relative_to(root.resolve())):
                    writer.remove(record.video_id)
                    report.removed.append(record.video_id)

        batch: list[DecodedVideo] = []

        def flush() -> None:
            if not batch:
                return
            began = time.perf_counter()
            frames = [d.sampled.frames for d in batch]
            encoded = encode_clips(backbone, frames, patch_dtype=torch.float16)  # stored as float16
            encoded_at = time.perf_counter()
            report.encode_s += encoded_at - began
            frame_feats = encoded.frame.numpy().reshape(len(batch), num_frames, -1)
            patch_feats = None
            if header.store_patches:
                patch_feats = encoded.patches.numpy().reshape(len(batch), num_frames, -1, header.embed_dim)
            raw_feats = encoded.raw.numpy().reshape(len(batch), num_frames, -1) if header.raw_dim else None
            coarse = meanp.video_embedding(frame_feats).numpy()
            for i, decoded in enumerate(batch):
                known = by_path.get(resolved_of[decoded.path])
                s = decoded.sampled
                record = VideoRecord(
                    video_id=decoded.video_id,
                    path=os.path.relpath(resolved_of[decoded.path], index_root),
                    size=decoded.stat.st_size,
                    mtime_ns=decoded.stat.st_mtime_ns,
                    sha256=decoded.sha256,
                    duration_s=round(s.duration_s, 3),
                    fps=round(s.fps, 3),
                    num_source_frames=s.num_source_frames,
                    width=s.width,
                    height=s.height,
                    frame_times_s=[round(float(t), 3) for t in s.timestamps_s],
                )
                writer.add(VideoFeatures(
                    record=record,
                    coarse=coarse[i],
                    frames=frame_feats[i],
                    patches=patch_feats[i] if patch_feats is not None else None,
                    strip_jpeg=decoded.strip_jpeg,
                    raw=raw_feats[i] if raw_feats is not None else None,
                ))
                (report.updated if known else report.added).append(decoded.video_id)
            report.frames_encoded += sum(len(f) for f in frames)
            report.store_s += time.perf_counter() - encoded_at
            batch.clear()

        last_commit = time.perf_counter()

        def commit() -> None:
            nonlocal last_commit
            began = time.perf_counter()
            writer.commit()
            last_commit = time.perf_counter()
            report.store_s += last_commit - began

        done = 0
        waited_from = time.perf_counter()
        for decoded in decode_ahead(todo, decode_workers, decode_processes):
            report.wait_s += time.perf_counter() - waited_from
            done += 1
            if decoded.error:
                report.failed.append((str(decoded.path), decoded.error))
            else:
                known = by_path.get(resolved_of[decoded.path])
                if known is not None and known.sha256 == decoded.sha256:
                    # touched but identical: nothing to re-encode, but record the new mtime
                    report.unchanged += 1
                    writer.touch(known.video_id, decoded.stat.st_mtime_ns)
                else:
                    batch.append(decoded)
                    if len(batch) * num_frames >= batch_frames:
                        flush()
            if progress:
                progress(done, len(todo), decoded.path.name)
            if writer.pending >= commit_every and time.perf_counter() - last_commit >= commit_interval_s:
                flush()
                commit()
            waited_from = time.perf_counter()
        flush()
        commit()
    report.seconds = time.perf_counter() - started
    return report


def remove_videos(index_dir: str | os.PathLike, video_ids: list[str]) -> list[str]:
    index = VideoIndex.open(index_dir)
    with VideoIndex.writer(index_dir, index.header) as writer:
        for video_id in video_ids:
            try:
                writer.remove(video_id)
            except KeyError as exc:
                raise VtrError(str(exc).strip("'\"")) from None
        writer.commit()
    return video_ids
