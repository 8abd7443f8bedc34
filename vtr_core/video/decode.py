"""Video decoding: uniform frame sampling with decord, input validation.

This is the first step of the pipeline (video file -> frames). Everything after it works on
`SampledFrames` or on moments (vtr_core.video.stream, which checks and probes files with the
functions here).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vtr_core.errors import VideoError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
)

# Frames are decoded at a reduced size: the backbones look at 224 px crops, so decoding an 8K
# frame at full size only costs memory and time.
DECODE_SHORT_SIDE = 256


@dataclass
class SampledFrames:
    """T frames sampled uniformly over a video, with where they sit in time."""

    path: str
    frames: np.ndarray  # uint8 [T, H, W, 3], RGB
    timestamps_s: np.ndarray  # float64 [T], start time of each sampled frame
    duration_s: float
    fps: float
    num_source_frames: int
    width: int  # of the source video
    height: int


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def uniform_frame_indices(num_source_frames: int, num_frames: int) -> np.ndarray:
    """Centre of each of `num_frames` equal segments (TSN-style uniform sampling).

    Clips with fewer frames than asked repeat frames, so every video yields exactly T frames and
    the features stack into one array.
    """
    if num_source_frames <= 0 or num_frames <= 0:
        raise ValueError("need at least one source frame and one sampled frame")
    centres = (np.arange(num_frames) + 0.5) * num_source_frames / num_frames
    return np.minimum(centres.astype(np.int64), num_source_frames - 1)


# decord prefixes its messages with "[hh:mm:ss] /path/to/file.cc:123: "
_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+?:\d+: ")


# ffmpeg error codes decord reports as bare numbers
_AVERRORS = {"1094995529": "invalid data", "541478725": "unexpected end of file"}


def one_line(exc: BaseException) -> str:
    """The first line of a decoder's message, without decord's prefix; ffmpeg codes spelt out."""
    text = _DECORD_PREFIX.sub("", str(exc)).strip().splitlines()
    line = text[0][:200] if text else type(exc).__name__
    return next((meaning for code, meaning in _AVERRORS.items() if code in line), line)


def check_file(path: str) -> bytes:
    """Reject what is not a readable regular file, with one line; return its first bytes.

    Opening the file (not `os.access`) is the real check: it applies the effective user's
    rights, and a FIFO named .mp4 is refused before a decoder could block reading it.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise VideoError(f"{path}: symbolic link loop") from None
        if os.path.islink(path):
            raise VideoError(f"{path}: broken symbolic link (to {os.readlink(path)})") from None
        if exc.errno == errno.ENOENT:
            raise VideoError(f"{path}: no such file") from None
        raise VideoError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise VideoError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as file:
            head = file.read(12)
    except PermissionError:
        raise VideoError(f"{path}: permission denied") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise VideoError(f"{path}: empty file (0 bytes)")
    return head


@dataclass(frozen=True)
class VideoHeader:
    """What the container's headers say about the video stream, before any frame is decoded."""

    width: int
    height: int
    duration_s: float  # 0.0 when the headers do not say
    fps: float  # average frame rate, 0.0 when unknown
    num_frames: int  # 0 when the headers do not say


def probe_video(path: str, head: bytes) -> VideoHeader:
    """Size, duration and rate of the video stream from the container's headers, decoding no frame.

    Decoding a first frame to learn the size (as decord alone would) costs a full-size frame:
    about 400 MB of decoder buffers for an 8K video. The headers also tell an audio-only file
    apart from a broken one.
    """
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.best("video")
            if stream is None:
                audio = " (audio only)" if container.streams.audio else ""
                raise VideoError(f"{path}: no video stream{audio}")
            width, height = stream.codec_context.width, stream.codec_context.height
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            else:  # the container's duration spans every stream (mkv, webm)
                duration = (container.duration or 0) / av.time_base
            rate = stream.average_rate or stream.guessed_rate
            header = VideoHeader(width, height, duration, float(rate or 0.0), int(stream.frames or 0))
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or one_line(exc)
        if head[4:8] == b"ftyp":  # an mp4/mov whose index (moov) is missing: cut short while written or copied
            raise VideoError(f"{path}: truncated or corrupt video ({reason})") from None
        raise VideoError(f"{path}: not a readable video ({reason})") from None
    if width <= 0 or height <= 0:
        raise VideoError(f"{path}: the video stream has no frame size")
    return header


def _open_reader(path: str, width: int = -1, height: int = -1):
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=1)
    except Exception as exc:  # decord raises RuntimeError/DECORDError; the headers were fine, so the data is not
        raise VideoError(f"{path}: truncated or corrupt video ({one_line(exc)})") from None


def decode_size(width: int, height: int) -> tuple[int, int]:
    """(-1, -1) for the source size, or a size whose short side is DECODE_SHORT_SIDE (large frames)."""
    if min(height, width) <= 2 * DECODE_SHORT_SIDE:
        return -1, -1
    scale = DECODE_SHORT_SIDE / min(height, width)
    # even sizes keep the scaler happy with yuv420 sources
    return 2 * round(width * scale / 2), 2 * round(height * scale / 2)


def read_video(path: str | os.PathLike, num_frames: int = 12) -> SampledFrames:
    """Decode `num_frames` uniformly sampled RGB frames, or raise `VideoError` naming the file.

    Any length and frame size is a valid video: a one-frame clip repeats its frame, a large frame
    is decoded at a reduced size (never a full-size copy per sample), and a long video is sampled
    by seeking to the keyframes before each sample, not decoded end to end.
    """
    path = str(path)
    header = probe_video(path, check_file(path))
    return sample_video(path, header, num_frames)


def sample_video(path: str, header: VideoHeader, num_frames: int) -> SampledFrames:
    """`read_video` once the file is checked and probed: decord seeks to each of the samples."""
    width, height = header.width, header.height
    reader = _open_reader(path, *decode_size(width, height))
    num_source_frames = len(reader)
    if num_source_frames == 0:
        raise VideoError(f"{path}: the video has no frames")

    indices = uniform_frame_indices(num_source_frames, num_frames)
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()
        times = reader.get_frame_timestamp(indices.tolist())[:, 0].astype(np.float64)
        last_end = float(reader.get_frame_timestamp([num_source_frames - 1])[0, 1])
    except Exception as exc:
        raise VideoError(f"{path}: truncated or corrupt video ({one_line(exc)})") from None
    fps = float(reader.get_avg_fps() or 0.0)
    duration = last_end if last_end > 0 else (num_source_frames / fps if fps > 0 else 0.0)
    if frames.ndim != 4 or frames.shape[0] != num_frames or frames.shape[-1] != 3:
        raise VideoError(f"{path}: decoder returned frames of shape {tuple(frames.shape)}")
    return SampledFrames(
        path=path,
        frames=np.ascontiguousarray(frames, dtype=np.uint8),
        timestamps_s=times,
        duration_s=duration,
        fps=fps,
        num_source_frames=num_source_frames,
        width=width,
        height=height,
    )
