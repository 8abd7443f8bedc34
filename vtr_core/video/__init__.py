"""Video files in, sampled frames and thumbnail strips out: the first step of the pipeline.

decode opens and validates files and samples frames uniformly (the only code that reads a video
file); thumbnails draws those frames as the strips an index stores. Neither imports torch, so the
indexer's decode worker processes start fast.
"""

from vtr_core.video.decode import (
    VIDEO_EXTENSIONS,
    SampledFrames,
    is_video_path,
    read_video,
    uniform_frame_indices,
)
from vtr_core.video.thumbnails import frame_strip, jpeg_bytes, split_strip, thumbnail

__all__ = [
    "VIDEO_EXTENSIONS",
    "SampledFrames",
    "frame_strip",
    "is_video_path",
    "jpeg_bytes",
    "read_video",
    "split_strip",
    "thumbnail",
    "uniform_frame_indices",
]
