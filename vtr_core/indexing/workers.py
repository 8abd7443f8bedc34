"""The indexer's decode workers: everything per video that needs no model, ahead of the encoder.

Each worker decodes a video's sampled frames, hashes the file and draws its thumbnail strip.
Threads suit a CPU-bound encoder; when a GPU encodes, decoding is the bottleneck and threads
contend for the GIL with the loop that feeds the GPU, so processes are used instead. This module
imports no torch, so a spawned worker process starts in a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from vtr_core.errors import VideoError
from vtr_core.storage import file_sha256
from vtr_core.video.decode import SampledFrames, read_video  # by name: tests patch it
from vtr_core.video.thumbnails import frame_strip, jpeg_bytes


@dataclass
class DecodedVideo:
    path: Path
    video_id: str
    sampled: SampledFrames | None = None
    sha256: str = ""
    stat: os.stat_result | None = None
    error: str = ""  # one line naming the file, when it could not be decoded
    strip_jpeg: bytes = b""


def decode_for_index(path: Path, video_id: str, num_frames: int) -> DecodedVideo:
    try:
        stat = path.stat()  # before decoding: a file rewritten meanwhile then looks changed on the next run
    except OSError:
        stat = None  # read_video names what is wrong: a symlink loop, a broken link, a missing file
    try:
        sampled = read_video(path, num_frames)
        stat = stat or path.stat()
        return DecodedVideo(path, video_id, sampled, file_sha256(path), stat, strip_jpeg=jpeg_bytes(frame_strip(sampled.frames)))
    except VideoError as exc:
        return DecodedVideo(path, video_id, error=str(exc))
    except OSError as exc:
        return DecodedVideo(path, video_id, error=f"{path}: {exc.strerror or exc}")


def default_decode_workers() -> int:
    """One worker per core (2 to 16)."""
    return max(2, min(16, os.cpu_count() or 2))


def spawn_can_start() -> bool:
    """Spawned processes re-import the main script; code piped to python (`<stdin>`) has none."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.isfile(main_file)


def decode_pool(workers: int, processes: bool) -> Executor:
    if processes and spawn_can_start():  # spawn: the parent may hold a CUDA context and threads, which fork must not copy
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")


def decode_ahead(jobs: Iterable[tuple[Path, str, int]], workers: int, processes: bool = False,
                 depth: int | None = None) -> Iterator[DecodedVideo]:
    """`decode_for_index` over `jobs`, in order, at most `depth` videos in flight (bounded memory)."""
    depth = depth or 4 * workers + 4
    with decode_pool(workers, processes) as pool:
        pending: deque[Future] = deque()
        for job in jobs:
            pending.append(pool.submit(decode_for_index, *job))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
