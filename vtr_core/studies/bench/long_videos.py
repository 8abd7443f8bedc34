"""Indexing long videos: hours of video indexed per hour, and where the time goes.

A folder of long files is indexed end to end with a moment policy (decode in one pass, cut into
moments, encode each distinct frame once, store), after two passes that isolate the parts: the
decoding pass alone (PyAV, moments cut, no encoding) and the count of distinct frames the
encoder gets. The goal is stated per hour of video: one hour indexed in at most 60 s is 60 hours
of video per hour of work.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from vtr_core.errors import VtrError

TARGET_SECONDS_PER_HOUR = 60.0  # issue 15: an hour of video in at most 60 s, lite backbone, 2 CPU cores


def per_hour(seconds: float, video_seconds: float) -> float:
    """Seconds of work per hour of video."""
    return round(seconds * 3600.0 / video_seconds, 1)


def long_video_figures(seconds: float, video_seconds: float, frames: int) -> dict:
    """An end-to-end run over long videos in the goal's units (frames: those the encoder ran on)."""
    return {"seconds": round(seconds, 3), "video_hours": round(video_seconds / 3600.0, 4), "frames": frames,
            "frames_per_s": round(frames / seconds, 1),
            "frames_per_hour_of_video": round(frames * 3600.0 / video_seconds, 1),
            "hours_of_video_per_hour": round(video_seconds / seconds, 2),
            "seconds_per_hour_of_video": per_hour(seconds, video_seconds)}


def decode_pass(paths: list[Path], policy: str, num_frames: int) -> dict:
    """Every file through the indexer's decoding pass alone: moments, the frames they sample,
    the distinct frames among them (what the encoder gets), the video's length and the time."""
    from vtr_core.indexing.encoding import distinct_frames
    from vtr_core.video import read_moments

    moments = sampled = distinct = 0
    video_seconds = 0.0
    width = height = 0
    fps = 0.0
    began = time.perf_counter()
    for path in paths:
        stream = read_moments(path, policy, num_frames)
        for chunk in stream.chunks():
            moments += len(chunk)
            sampled += len(chunk) * num_frames
            distinct += len(distinct_frames(chunk)[0])
        video_seconds += stream.info.duration_s
        width, height, fps = stream.info.width, stream.info.height, stream.info.fps
    seconds = time.perf_counter() - began
    return {"seconds": round(seconds, 3), "video_seconds": round(video_seconds, 3), "moments": moments,
            "sampled_frames": sampled, "distinct_frames": distinct, "width": width, "height": height,
            "fps": round(fps, 3), "seconds_per_hour_of_video": per_hour(seconds, video_seconds),
            "moments_per_hour_of_video": round(moments * 3600.0 / video_seconds, 1)}


def long_video_case(video_dir: str | Path, backbone, policy: str, num_frames: int = 12,
                    workers: int | None = None) -> dict:
    """The decoding pass alone, then the whole indexer on the same files (a fresh index)."""
    from vtr_core.indexing import scan_videos
    from vtr_core.indexing.indexer import index_folder

    paths = scan_videos(Path(video_dir))
    if not paths:
        raise VtrError(f"{video_dir}: no long videos to benchmark")
    decoded = decode_pass(paths, policy, num_frames)
    with tempfile.TemporaryDirectory() as scratch:
        report = index_folder(video_dir, Path(scratch) / "index", backbone, num_frames=num_frames,
                              decode_workers=workers, moments=policy)
    if report.failed:
        raise VtrError(f"long-video bench: {len(report.failed)} files failed: {report.failed[0][1]}")
    pipeline = long_video_figures(report.seconds, decoded["video_seconds"], decoded["distinct_frames"])
    pipeline.update({"wait_s": round(report.wait_s, 3), "encode_s": round(report.encode_s, 3),
                     "store_s": round(report.store_s, 3), "target_seconds_per_hour": TARGET_SECONDS_PER_HOUR})
    return {"folder": Path(video_dir).name, "files": len(paths), "moments": policy, "frames_per_moment": num_frames,
            "backbone": backbone.spec, "decode": decoded, "pipeline": pipeline}
