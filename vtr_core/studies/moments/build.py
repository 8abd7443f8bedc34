"""The long-video moment benchmark: clips of a split joined into long videos, with exact ground truth.

Why: the retrieval benchmarks rank whole 10-30 s clips; moment search has to find a clip's range
inside a long video. Joining the clips of a split (MSR-VTT test300 for reporting, train700 for
tuning) into long videos of N clips each makes a corpus whose ground truth is known exactly: each
clip's range in its long video and its query (MSR-VTT: the JSFUSION caption, as `load_msrvtt`
reads it). Clips are decoded with PyAV and re-encoded as one H.264 mp4 per long video at the
sources' size and frame rate (scaled and resampled when a clip differs); ranges are counted in the
frames written, so start_s = first frame / fps exactly. The clip order is a seeded shuffle, and x264
runs on one thread, so a build is deterministic given the seed.

Layout of a benchmark folder: `videos/long000.mp4 ...` and `ground_truth.json` (`MomentBenchmark`).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from vtr_core.errors import VtrError
from vtr_core.storage import atomic_write_bytes

if TYPE_CHECKING:
    from vtr_core.training.data import RetrievalDataset

GROUND_TRUTH = "ground_truth.json"
VIDEOS = "videos"
X264_OPTIONS = {"crf": "17", "preset": "medium", "threads": "1"}  # one thread: (almost) the same frames every run


@dataclass
class ClipSpan:
    """One source clip inside a long video: where it lies (exact, in written frames) and its query."""

    video_id: str  # the source clip's id (MSR-VTT: videoNNNN)
    start_s: float
    end_s: float
    start_frame: int
    num_frames: int
    query: str


@dataclass
class LongVideo:
    """One long video of the benchmark and the clips it is made of, in order."""

    file: str  # under the benchmark's videos/ folder
    num_frames: int
    duration_s: float
    clips: list[ClipSpan] = field(default_factory=list)

    @property
    def video_id(self) -> str:
        """The id the indexer gives the file (its stem: the benchmark's names never collide)."""
        return Path(self.file).stem


@dataclass
class MomentBenchmark:
    """Ground truth of a built benchmark: its long videos and where it came from."""

    name: str
    source: str  # the dataset folder the clips came from
    split: str
    seed: int
    clips_per_video: int
    fps: float
    width: int
    height: int
    videos: list[LongVideo] = field(default_factory=list)

    @property
    def clips(self) -> list[tuple[LongVideo, ClipSpan]]:
        """Every clip with its long video, in benchmark order: one query each."""
        return [(video, clip) for video in self.videos for clip in video.clips]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MomentBenchmark:
        videos = [LongVideo(**{**v, "clips": [ClipSpan(**c) for c in v["clips"]]}) for v in data["videos"]]
        return cls(**{**data, "videos": videos})


def load_benchmark(folder: str | Path) -> MomentBenchmark:
    """The ground truth of a benchmark folder made by `build_benchmark`."""
    path = Path(folder) / GROUND_TRUTH
    if not path.is_file():
        raise VtrError(f"{folder}: not a moment benchmark (no {GROUND_TRUTH}); build one first")
    try:
        return MomentBenchmark.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise VtrError(f"{path}: unreadable ground truth ({exc})") from None


def clip_order(video_ids: Sequence[str], clips_per_video: int, seed: int,
               max_videos: int | None = None) -> list[list[int]]:
    """Indices of the clips of each long video: a seeded shuffle cut into groups (the last may be shorter)."""
    if clips_per_video < 1:
        raise VtrError(f"clips per video must be at least 1, got {clips_per_video}")
    order = list(range(len(video_ids)))
    random.Random(seed).shuffle(order)
    groups = [order[i : i + clips_per_video] for i in range(0, len(order), clips_per_video)]
    return groups[:max_videos] if max_videos is not None else groups


def _probe(path: Path) -> tuple[int, int, Fraction]:
    """(width, height, frame rate) of a clip's video stream."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return stream.codec_context.width, stream.codec_context.height, Fraction(rate or 0)
    except (av.FFmpegError, IndexError) as exc:
        raise VtrError(f"{path}: cannot read the clip ({exc})") from None


def _decoded_frames(path: Path, fps: Fraction) -> list:
    """Every frame of a clip, resampled to `fps` by index when its own rate differs (nearest earlier frame)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            source_fps = Fraction(stream.average_rate or stream.guessed_rate or fps)
            frames = list(container.decode(stream))
    except (av.FFmpegError, IndexError) as exc:
        raise VtrError(f"{path}: cannot decode the clip ({exc})") from None
    if not frames:
        raise VtrError(f"{path}: the clip has no frames")
    if source_fps == fps:
        return frames
    count = max(1, round(len(frames) * fps / source_fps))
    return [frames[min(len(frames) - 1, int(k * source_fps / fps))] for k in range(count)]


class _LongVideoWriter:
    """One H.264 mp4 being written frame by frame, frame k at time k / fps."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction):
        import av

        self.width, self.height, self.fps, self.frames = width, height, fps, 0
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=fps, options=dict(X264_OPTIONS))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"

    def write(self, frame) -> None:
        out = frame.reformat(self.width, self.height, "yuv420p")
        out.pts, out.time_base = self.frames, 1 / self.fps
        for packet in self.stream.encode(out):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def common_format(paths: Sequence[Path]) -> tuple[int, int, Fraction]:
    """The most common (width, height, frame rate) of the clips (ties: the first clip's)."""
    formats = [_probe(path) for path in paths]
    width, height, fps = max(formats, key=formats.count)
    if fps <= 0:
        raise VtrError(f"{paths[formats.index((width, height, fps))]}: the clip has no frame rate")
    return width, height, fps.limit_denominator(1001)


def _even(n: int) -> int:
    return max(2, n - n % 2)  # x264 in yuv420p needs even sides


def write_long_video(path: Path, clips: Sequence[tuple[str, Path, str]], width: int, height: int,
                     fps: Fraction) -> LongVideo:
    """Join clips (video id, file, query) into one mp4 at `path`; their exact ranges in it."""
    writer = _LongVideoWriter(path, width, height, fps)
    spans = []
    try:
        for video_id, clip_path, query in clips:
            start = writer.frames
            for frame in _decoded_frames(clip_path, fps):
                writer.write(frame)
            spans.append(ClipSpan(video_id, float(start / fps), float(writer.frames / fps), start,
                                  writer.frames - start, query))
    finally:
        writer.close()
    return LongVideo(path.name, writer.frames, float(writer.frames / fps), spans)


def build_benchmark(dataset: RetrievalDataset, out_dir: str | Path, split: str, clips_per_video: int = 10,
                    seed: int = 0, max_videos: int | None = None, source: str = "",
                    progress: Callable[[int, int, str], None] | None = None) -> MomentBenchmark:
    """Write the long videos of a dataset's clips and their ground truth under `out_dir`.

    Size and frame rate are the clips' most common (MSR-VTT: 298x224 at 3 fps); each clip's query is
    the dataset's text-to-video query for it. `max_videos` keeps only the first long videos (quick checks).
    """
    out_dir = Path(out_dir)
    groups = clip_order(dataset.video_ids, clips_per_video, seed, max_videos)
    if not groups:
        raise VtrError(f"{dataset.name}: no clips to join")
    width, height, fps = common_format([dataset.video_paths[i] for group in groups for i in group])
    query_of = {int(v): q for q, v in zip(dataset.queries, dataset.query_video)}
    benchmark = MomentBenchmark(f"{dataset.name}-long{clips_per_video}-seed{seed}", source, split, seed,
                                clips_per_video, float(fps), _even(width), _even(height))
    (out_dir / VIDEOS).mkdir(parents=True, exist_ok=True)
    for number, group in enumerate(groups):
        clips = [(dataset.video_ids[i], dataset.video_paths[i], query_of[i]) for i in group]
        path = out_dir / VIDEOS / f"long{number:03d}.mp4"
        benchmark.videos.append(write_long_video(path, clips, benchmark.width, benchmark.height, fps))
        if progress:
            progress(number + 1, len(groups), path.name)
    atomic_write_bytes(out_dir / GROUND_TRUTH, json.dumps(benchmark.to_dict(), indent=1).encode())
    return benchmark


def build_split_benchmark(data_dir: str | Path, split: str, out_dir: str | Path, clips_per_video: int = 10,
                          seed: int = 0, max_videos: int | None = None,
                          progress: Callable[[int, int, str], None] | None = None) -> MomentBenchmark:
    """`build_benchmark` over a split of a dataset folder (MSR-VTT, or videos with captions.jsonl)."""
    from vtr_core.training.data import load_dataset

    dataset = load_dataset(data_dir, split)
    return build_benchmark(dataset, out_dir, split, clips_per_video, seed, max_videos,
                           source=str(Path(data_dir).resolve()), progress=progress)
