"""The records an index stores: one per video, the header every vector depends on, and what the
indexer hands over for one video."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VideoRecord:
    """One indexed video: where it came from, what it is, where its features are stored."""

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
    frame_times_s: list[float]
    segment: str = ""
    row: int = -1


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

    @property
    def num_patches(self) -> int:
        return self.patch_grid[0] * self.patch_grid[1] if self.patch_grid and self.store_patches else 0


@dataclass
class VideoFeatures:
    """Everything the indexer stores for one video (input to `IndexWriter.add`)."""

    record: VideoRecord
    coarse: np.ndarray  # [D] float32
    frames: np.ndarray  # [T, D]
    patches: np.ndarray | None  # [T, P, D]
    strip_jpeg: bytes = b""
    raw: np.ndarray | None = None  # [T, R]
