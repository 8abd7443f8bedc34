"""The indexer's decode workers: everything per video that needs no model, ahead of the encoder.

Each worker decodes a video's moments (their sampled frames), hashes the file and draws the
moments' thumbnail strips; a long video is only probed (the indexer streams its moments).
Threads suit a CPU-bound encoder; when a GPU encodes, decoding is the bottleneck and threads
contend for the GIL with the loop that feeds the GPU, so processes are used instead. This module
imports no torch, so a spawned worker process starts in a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import threading
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from vtr_core.errors import VideoError
from vtr_core.storage import file_sha256
from vtr_core.video.moments import MomentFrames, MomentPolicy
from vtr_core.video.stream import MomentStream, VideoInfo, read_moments  # by name: tests patch it

T = TypeVar("T")
from vtr_core.video.thumbnails import frame_strip, jpeg_bytes


@dataclass
class DecodedVideo:
    """A file ready for the encoder: its moments decoded (a file up to the moment length), or
    `streamed` (a longer one, whose moments are decoded while the encoder works: see
    vtr_core.indexing.indexer); or the one line saying why it cannot be indexed."""

    path: Path
    video_id: str
    info: VideoInfo | None = None
    moments: list[MomentFrames] = field(default_factory=list)
    strips: list[bytes] = field(default_factory=list)  # each moment's thumbnail strip (JPEG)
    streamed: bool = False
    sha256: str = ""
    stat: os.stat_result | None = None
    error: str = ""  # one line naming the file, when it could not be decoded
    warning: str = ""  # one line, when only part of the file decoded (cut short while streamed)


def moment_strip(moment: MomentFrames) -> bytes:
    """A moment's thumbnail strip, as the index stores it."""
    return jpeg_bytes(frame_strip(moment.frames))


def decode_for_index(path: Path, video_id: str, num_frames: int, moments: str) -> DecodedVideo:
    """Hash a file and decode its moments (`moments`: the policy's spec); a long file is only
    probed here, and decoded later as a stream."""
    try:
        stat = path.stat()  # before decoding: a file rewritten meanwhile then looks changed on the next run
    except OSError:
        stat = None  # read_moments names what is wrong: a symlink loop, a broken link, a missing file
    try:
        stream = read_moments(path, MomentPolicy.parse(moments), num_frames)
        decoded = DecodedVideo(path, video_id, stream.info, streamed=stream.streamed)
        if not stream.streamed:
            decoded.moments = [m for chunk in stream.chunks() for m in chunk]
            decoded.strips = [moment_strip(m) for m in decoded.moments]
            decoded.info, decoded.warning = stream.info, stream.warning
        decoded.stat, decoded.sha256 = stat or path.stat(), file_sha256(path)
        return decoded
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


def decode_ahead(jobs: Iterable[tuple[Path, str, int, str]], workers: int, processes: bool = False,
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


def stream_moments(decoded: DecodedVideo, moments: str, num_frames: int) -> MomentStream:
    """The moments of a long file, decoded as they are read (in the process that encodes them)."""
    return read_moments(decoded.path, MomentPolicy.parse(moments), num_frames)


_DONE = object()


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced by a background thread up to `depth` ahead: a long video's moments are
    decoded (and their strips drawn) while the encoder works on the previous chunk. An error in the
    producer is raised here; leaving the loop early stops the producer."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((_DONE, exc))

    producer = threading.Thread(target=produce, name="moments", daemon=True)
    producer.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        producer.join(timeout=5)
