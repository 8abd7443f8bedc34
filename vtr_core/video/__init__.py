"""Video files in, sampled frames and thumbnail strips out: the first step of the pipeline.

decode opens and validates files and samples frames uniformly (the only code that reads a video
file besides stream); moments says how a long video is cut into moments (time ranges) and stream
decodes them in one pass; thumbnails draws sampled frames as the strips an index stores. None of
them imports torch, so the indexer's decode worker processes start fast.
"""

from vtr_core.video.decode import (
    VIDEO_EXTENSIONS,
    SampledFrames,
    is_video_path,
    read_video,
    uniform_frame_indices,
)
from vtr_core.video.moments import (
    DEFAULT_MOMENTS,
    MomentFrames,
    MomentPolicy,
    sample_times,
    shot_ranges,
    window_ranges,
)
from vtr_core.video.stream import MomentStream, VideoInfo, read_moments
from vtr_core.video.thumbnails import frame_strip, jpeg_bytes, split_strip, thumbnail

__all__ = [
    "DEFAULT_MOMENTS",
    "VIDEO_EXTENSIONS",
    "MomentFrames",
    "MomentPolicy",
    "MomentStream",
    "SampledFrames",
    "VideoInfo",
    "frame_strip",
    "is_video_path",
    "jpeg_bytes",
    "read_moments",
    "read_video",
    "sample_times",
    "shot_ranges",
    "split_strip",
    "thumbnail",
    "uniform_frame_indices",
    "window_ranges",
]
