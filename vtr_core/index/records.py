"""The records an index stores: a video file, the moments cut from it, the header every vector
depends on, and what the indexer hands over for one video."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class VideoRecord:
    """One indexed file: where it came from and what it is (its moments hold the features)."""

    video_id: str
    path: str  # relative to the index directory, so an index and its videos can move together
    size: int
    mtime_ns: int
    sha256: str
    duration_s: float
    fps: float
    num_source_frames: int
    width: int
    height: int


@dataclass
class MomentRecord:
    """The unit of retrieval: a time range of a video, its T sampled frames, where its features are.

    `moment_id` is stable for the moment's life in the index (search structures are keyed by it);
    a row number is only a position in one generation's moment order."""

    video_id: str
    start_s: float
    end_s: float
    frame_times_s: list[float]
    segment: str = ""
    row: int = -1  # row in the segment's arrays
    moment_id: int = -1


@dataclass
class IndexHeader:
    """What every vector in the index depends on; a mismatch with the reader is an error."""

    backbone_spec: str
    backbone_id: str
    embed_dim: int
    num_frames: int
    patch_grid: list[int] | None
    store_patches: bool
    faiss_factory: str = "auto"  # the collection's size chooses (vtr_core.index.structures), or a factory string
    raw_dim: int = 0  # per-frame raw (pre-joint-space) features stored, 0: none
    moments: str = ""  # how files are cut into moments (vtr_core.video.moments); "": made before moment search

    @property
    def moment_spec(self) -> str:
        """The moment policy's spec. An index made before moment search stored each file as one
        moment, which is what the default policy makes of files up to its length."""
        from vtr_core.video.moments import DEFAULT_MOMENTS

        return self.moments or DEFAULT_MOMENTS

    @property
    def num_patches(self) -> int:
        return self.patch_grid[0] * self.patch_grid[1] if self.patch_grid and self.store_patches else 0


@dataclass
class MomentFeatures:
    """What the index stores for one moment."""

    start_s: float
    end_s: float
    frame_times_s: list[float]
    coarse: np.ndarray  # [D] float32
    frames: np.ndarray  # [T, D]
    patches: np.ndarray | None = None  # [T, P, D]
    strip_jpeg: bytes = b""
    raw: np.ndarray | None = None  # [T, R]


@dataclass
class VideoFeatures:
    """Everything the indexer stores for one video (input to `IndexWriter.add`): its record and its
    moments (one covering the whole of a short file; a long one's, in time order)."""

    record: VideoRecord
    moments: list[MomentFeatures] = field(default_factory=list)

    @classmethod
    def whole(cls, record: VideoRecord, frame_times_s: list[float], coarse: np.ndarray, frames: np.ndarray,
              patches: np.ndarray | None = None, strip_jpeg: bytes = b"", raw: np.ndarray | None = None
              ) -> "VideoFeatures":
        """A video stored as one moment from 0 to its duration."""
        return cls(record, [MomentFeatures(0.0, record.duration_s, list(frame_times_s), coarse, frames, patches,
                                           strip_jpeg, raw)])
