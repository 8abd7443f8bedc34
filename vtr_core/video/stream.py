"""Moments of a video file, decoded in one sequential pass with bounded memory.

A video no longer than the policy's moment length is one moment, sampled by `read_video`'s
decord path (same frames, same timestamps as before moments existed). A longer one, or a file
decord refuses because it was cut short while streamed, is decoded once from start to end with
PyAV: every frame feeds PySceneDetect's ContentDetector at a small size (shots policy), a few
frames a second are kept at the decoding size, and each moment takes its T frames from those
kept frames as soon as its range is final (`MomentPlanner`). Frames older than the earliest
moment still open are dropped, so memory follows the longest moment, not the video's length.

Damage: a file that ends before its headers say (cut short) yields its moments up to where it
decodes, with one warning line; a packet that fails to decode is skipped (the decoder resumes
at the next keyframe) and counted in the warning; a demuxer error ends the pass there, like a cut.
A file of which no frame decodes is a `VideoError`. No torch here: decode workers import this.
"""

from __future__ import annotations

import functools
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from vtr_core.errors import VideoError
from vtr_core.video.decode import VideoHeader, check_file, decode_size, probe_video, sample_video
from vtr_core.video.moments import MomentFrames, MomentPlanner, MomentPolicy, Range, sample_times

# Kept frames: 1.5x the rate at which T samples of the shortest moment fall, so the nearest kept
# frame to each sample is a different one (the source's own frame times jitter the kept grid).
KEEP_OVERSAMPLE = 1.5
MIN_KEEP_FPS, MAX_KEEP_FPS = 1.0, 10.0
# Shot detection on frames this wide, scaled by ffmpeg's fast bilinear scaler: ContentDetector's
# score is a per-pixel mean, so the size matters little. Measured on 80 MSR-VTT clips against
# PySceneDetect's own downscale (SceneManager: >= 256 px, cv2 INTER_LINEAR): 764 of its 765 cuts
# found within a frame, 4 extra; an area scaler at 96 px smooths scores and misses 32. The scaling
# costs 0.08 ms a 720p frame (area: 0.26), the detector about 0.15 ms, decoding 1.5-1.8 ms.
# At most DETECT_MAX_FPS frames a second feed it: every frame at 25-30 fps, every other at 60.
DETECT_WIDTH = 96
DETECT_MAX_FPS = 30.0
DETECT_THRESHOLD = 27.0  # ContentDetector's default
# how far a decoded end may fall short of the headers' duration before the file counts as cut short
CUT_SHORT_SLACK_S = 1.0


@dataclass
class VideoInfo:
    """A video file's stream: the same fields, with the same meaning, as `SampledFrames`'."""

    path: str
    duration_s: float
    fps: float
    num_source_frames: int
    width: int  # of the source video
    height: int


@dataclass
class _Outcome:
    """What one decoding pass found: where the video really ends, and what went wrong on the way."""

    duration_s: float
    num_frames: int
    damaged_packets: int
    stopped_by: str  # a demuxer error that ended the pass early, or ""


class MomentStream:
    """A video's moments, in time order, in lists of at most `chunk_moments`.

    `streamed` is True when `chunks()` decodes while it is iterated (each iteration is a new
    pass); False when the moments were decoded already (one chunk holding one moment). After a
    complete pass, `info` holds what was decoded (duration, frame count) and `warning` is one
    line saying what was lost when the file was cut short or damaged ("" otherwise);
    `decoded_s` tells how far the current pass has got.
    """

    def __init__(self, info: VideoInfo, streamed: bool,
                 source: Callable[[MomentStream], Iterator[list[MomentFrames]]] | list[MomentFrames],
                 header: VideoHeader | None = None):
        self.info = info
        self.streamed = streamed
        self.warning = ""
        self.decoded_s = 0.0 if streamed else info.duration_s
        self._source = source
        self._header = header

    def chunks(self) -> Iterator[list[MomentFrames]]:
        if not self.streamed:
            yield list(self._source)
            return
        self.decoded_s, self.warning = 0.0, ""
        outcome = yield from self._source(self)
        fps = self.info.fps or (outcome.num_frames / outcome.duration_s if outcome.duration_s > 0 else 0.0)
        self.info = replace(self.info, duration_s=outcome.duration_s, fps=fps, num_source_frames=outcome.num_frames)
        self.warning = _warning(self.info.path, self._header, outcome)

    def moments(self) -> Iterator[MomentFrames]:
        """Every moment, one at a time (the chunks flattened)."""
        for chunk in self.chunks():
            yield from chunk


def read_moments(path: str | os.PathLike, policy: MomentPolicy | str, num_frames: int = 12,
                 chunk_moments: int = 32) -> MomentStream:
    """A video file's moments under `policy`, or `VideoError` (one line naming the file).

    The file is checked and its headers read now; a short video is decoded now (decord), a long
    one as `chunks()` is iterated (PyAV, one pass).
    """
    if num_frames <= 0 or chunk_moments <= 0:
        raise ValueError("need at least one frame per moment and one moment per chunk")
    policy = MomentPolicy.parse(policy) if isinstance(policy, str) else policy
    path = str(path)
    header = probe_video(path, check_file(path))
    if 0 < header.duration_s <= policy.whole_s:
        try:
            sampled = sample_video(path, header, num_frames)
        except VideoError:
            pass  # decord refuses a file cut short while streamed: PyAV decodes what is there
        else:
            info = VideoInfo(path, sampled.duration_s, sampled.fps, sampled.num_source_frames,
                             sampled.width, sampled.height)
            moment = MomentFrames(0.0, sampled.duration_s, sampled.frames, sampled.timestamps_s)
            return MomentStream(info, False, [moment])
    _check_first_frame(path)

    def decode_pass(stream: MomentStream) -> Iterator[list[MomentFrames]]:
        return _MomentDecoder(path, header, policy, num_frames, chunk_moments).run(stream)

    frames = header.num_frames or round(header.duration_s * header.fps)
    info = VideoInfo(path, header.duration_s, header.fps, frames, header.width, header.height)
    return MomentStream(info, True, decode_pass, header)


def keep_fps(policy: MomentPolicy, num_frames: int, duration_s: float = 0.0) -> float:
    """Rate of kept frames: enough for `num_frames` distinct samples of the shortest moment."""
    shortest = policy.min_shot_s if policy.kind == "shots" else policy.length_s
    if duration_s > 0:
        shortest = min(shortest, duration_s)  # the whole video is one moment
    if shortest <= 0:
        return MAX_KEEP_FPS
    return min(MAX_KEEP_FPS, max(MIN_KEEP_FPS, KEEP_OVERSAMPLE * num_frames / shortest))


def _check_first_frame(path: str) -> None:
    """A file of which not one frame decodes is an error now, not a surprise in `chunks()`."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                try:
                    if packet.decode():
                        return
                except av.FFmpegError:
                    continue
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: truncated or corrupt video ({getattr(exc, 'strerror', None) or exc})") from None
    raise VideoError(f"{path}: truncated or corrupt video (no frame decodes)")


class _FrameBuffer:
    """Kept frames of the moments still open, oldest first."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()
        self._frames: deque[np.ndarray] = deque()

    def __len__(self) -> int:
        return len(self._times)

    def add(self, time_s: float, frame: np.ndarray) -> None:
        self._times.append(time_s)
        self._frames.append(frame)

    def drop_before(self, time_s: float) -> None:
        """Forget frames before `time_s`, but the last one before it (the nearest to a sample there)."""
        while len(self._times) > 1 and self._times[1] <= time_s:
            self._times.popleft()
            self._frames.popleft()

    def moment(self, span: Range, num_frames: int) -> MomentFrames:
        """The kept frame nearest each sample time of `span`, among those inside it when there are any."""
        start, end = span
        times = np.fromiter(self._times, np.float64, len(self._times))
        first, last = np.searchsorted(times, start), np.searchsorted(times, end)
        if first == last:  # no kept frame inside (a very short moment): the nearest ones
            first, last = 0, len(times)
        inside = times[first:last]
        targets = sample_times(start, end, num_frames)
        right = np.clip(np.searchsorted(inside, targets), 1, len(inside) - 1) if len(inside) > 1 else None
        if right is None:
            picks = np.zeros(num_frames, np.int64)
        else:
            nearer_left = targets - inside[right - 1] <= inside[right] - targets
            picks = np.where(nearer_left, right - 1, right)
        frames = np.stack([self._frames[first + int(i)] for i in picks])
        return MomentFrames(float(start), float(end), frames, inside[picks].copy())


class _ShotDetector:
    """PySceneDetect's ContentDetector fed small BGR frames; cuts come back as seconds."""

    def __init__(self, width: int, height: int, fps: float):
        from av.video.reformatter import VideoReformatter
        from scenedetect.detectors import ContentDetector

        # min_scene_len 0: cuts come at once; MomentPlanner merges short shots itself
        self._detector = ContentDetector(threshold=DETECT_THRESHOLD, min_scene_len=0)
        self._reformatter = VideoReformatter()
        self._size = (DETECT_WIDTH, max(2, 2 * round(DETECT_WIDTH * height / max(width, 1) / 2)))
        self._rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        self._every = max(1, math.ceil(fps / DETECT_MAX_FPS)) if fps > 0 else 1
        self._count = 0

    def feed(self, frame, time_s: float) -> list[float]:
        from scenedetect import FrameTimecode

        self._count += 1
        if (self._count - 1) % self._every:
            return []
        small = self._reformatter.reformat(frame, width=self._size[0], height=self._size[1], format="bgr24",
                                           interpolation="FAST_BILINEAR", **_one_thread()).to_ndarray()
        return [cut.seconds for cut in self._detector.process_frame(FrameTimecode(time_s, fps=self._rate), small)]


@dataclass
class _Tally:
    frames: int = 0
    end_s: float = 0.0
    damaged_packets: int = 0
    stopped_by: str = ""


class _MomentDecoder:
    """One PyAV pass over a file (a new decoder per pass): frames feed the detector and the
    buffer, ranges the planner makes final become moments."""

    def __init__(self, path: str, header: VideoHeader, policy: MomentPolicy, num_frames: int, chunk_moments: int):
        from av.video.reformatter import VideoReformatter

        self.path, self.header, self.policy = path, header, policy
        self.num_frames, self.chunk_moments = num_frames, chunk_moments
        self.keep_fps = keep_fps(policy, num_frames, header.duration_s)
        width, height = decode_size(header.width, header.height)
        self.size = (header.width, header.height) if width < 0 else (width, height)
        self.planner, self.buffer, self.next_keep = MomentPlanner(policy), _FrameBuffer(), -math.inf
        # one reformatter per conversion: each keeps its ffmpeg scaler, set up once for the pass
        self.scaler, self.converter = VideoReformatter(), VideoReformatter()
        self.detector = _ShotDetector(header.width, header.height, header.fps) if policy.kind == "shots" else None

    def run(self, stream: MomentStream) -> Iterator[list[MomentFrames]]:
        """Chunks of moments as they become final; returns the pass's `_Outcome` (for `yield from`)."""
        import av

        tally = _Tally()
        chunk: list[MomentFrames] = []
        with av.open(self.path) as container:
            video = container.streams.video[0]
            video.thread_type = "AUTO"
            for frame, start, end in self._frames(container, video, tally):
                stream.decoded_s = end
                chunk += self._moments_at(frame, start, end)
                if len(chunk) >= self.chunk_moments:
                    yield chunk[: self.chunk_moments]
                    chunk = chunk[self.chunk_moments:]
        if tally.frames == 0:
            raise VideoError(f"{self.path}: truncated or corrupt video (no frame decodes)")
        chunk += [self.buffer.moment(span, self.num_frames) for span in self.planner.finish(tally.end_s)]
        while chunk:
            yield chunk[: self.chunk_moments]
            chunk = chunk[self.chunk_moments:]
        return _Outcome(tally.end_s, tally.frames, tally.damaged_packets, tally.stopped_by)

    def _moments_at(self, frame, start: float, end: float) -> list[MomentFrames]:
        """Take in one decoded frame [start, end): the moments it makes final."""
        ranges: list[Range] = []
        for cut in self.detector.feed(frame, start) if self.detector is not None else []:
            ranges += self.planner.add_cut(cut)
        if start >= self.next_keep:  # only kept frames are converted to RGB
            self.buffer.add(start, self._rgb(frame))
            self.next_keep = (math.floor(start * self.keep_fps + 1e-6) + 1) / self.keep_fps
        moments = [self.buffer.moment(span, self.num_frames) for span in ranges + self.planner.advance(end)]
        self.buffer.drop_before(self.planner.keep_from)
        return moments

    def _rgb(self, frame) -> np.ndarray:
        """The frame at the decoding size, RGB: scaled in its own format first, then converted
        (half the time of ffmpeg scaling and converting in one step: 0.74 ms a 720p frame, not 1.46)."""
        width, height = self.size
        if (frame.width, frame.height) != (width, height):
            frame = self.scaler.reformat(frame, width=width, height=height, **_one_thread())
        return self.converter.reformat(frame, format="rgb24", **_one_thread()).to_ndarray()

    def _frames(self, container, video, tally: _Tally) -> Iterator[tuple[object, float, float]]:
        """(frame, start, end) in presentation order, seconds from the stream's start; errors tallied."""
        import av

        clock = _FrameClock(video.start_time, video.time_base, self.header.fps)
        packets = container.demux(video)
        while True:
            try:
                packet = next(packets, None)
            except (av.FFmpegError, OSError) as exc:  # the container breaks here
                tally.stopped_by, packet = _reason(exc), None
            if packet is None and not tally.stopped_by:
                return  # the demuxer's own last (empty) packet has flushed the decoder
            try:
                frames = video.decode(packet)  # None: flush what the decoder holds
            except (av.FFmpegError, OSError):
                tally.damaged_packets += 1
                frames = []
            for frame in frames:
                start, end = clock.place(frame)
                tally.frames += 1
                tally.end_s = max(tally.end_s, end)
                yield frame, start, end
            if packet is None:
                return


class _FrameClock:
    """Frame times in seconds from the stream's start, never going back (a frame without a pts
    follows the previous one)."""

    def __init__(self, start_pts: int | None, time_base: Fraction | None, fps: float):
        self.base, self.time_base = start_pts, time_base
        self.step = 1.0 / fps if fps > 0 else 1.0 / 25
        self.start = self.end = 0.0

    def place(self, frame) -> tuple[float, float]:
        start = self.end
        if frame.pts is not None and self.time_base:
            self.base = frame.pts if self.base is None else self.base
            start = float((frame.pts - self.base) * self.time_base)
        self.start = max(self.start, start)
        ticks = getattr(frame, "duration", None)  # PyAV >= 13
        duration = float(ticks * self.time_base) if ticks and self.time_base else self.step
        self.end = max(self.end, self.start + duration)
        return self.start, self.start + duration


@functools.cache
def _one_thread() -> dict[str, int]:
    """PyAV 17 scales with a thread per CPU unless told otherwise (older ones with one, and no
    `threads` argument); one is quicker for these small outputs and the decoder has the others."""
    import av

    return {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or next(iter(str(exc).splitlines()), "") or type(exc).__name__
    return str(text)[:120]


def _clock(seconds: float) -> str:
    """0:36, 1:02:03: a time in the video as a warning spells it."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _warning(path: str, header: VideoHeader | None, outcome: _Outcome) -> str:
    """One line saying what a pass lost, or ""."""
    expected = header.duration_s if header is not None else 0.0
    missing = expected - outcome.duration_s
    slack = max(CUT_SHORT_SLACK_S, 3.0 / header.fps if header is not None and header.fps > 0 else 0.0)
    if expected > 0 and missing > slack:
        amount = f"{missing:.0f}" if missing >= 10 else f"{missing:.1f}"
        return (f"{path}: cut short: decoded {_clock(outcome.duration_s)} of {_clock(expected)} "
                f"({amount} s missing)")
    if outcome.stopped_by:
        return f"{path}: damaged: decoding stopped at {_clock(outcome.duration_s)} ({outcome.stopped_by})"
    if outcome.damaged_packets:
        return f"{path}: damaged: {outcome.damaged_packets} packets did not decode and were skipped"
    return ""
