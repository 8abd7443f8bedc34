"""The records the explorer's services return: plain dataclasses (numbers, text, PIL images, numpy
arrays) that any front end can draw; `vtr_core.explorer.panels` turns them into charts and tables."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from vtr_core.methods import Explanation

DSL_NOTE = ("DSL is transductive: it rescales each score by a softmax over the whole query set (each clip's "
            "column), so it needs every query at once and cannot serve a single online query.")


@dataclass
class ClipHit:
    rank: int
    video_id: str
    path: str
    score: float
    coarse_rank: int  # rank after stage 1 (faiss), before any re-rank
    coarse_score: float
    reranked: bool
    thumbnail: Image.Image | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "thumbnail"}


@dataclass
class QueryTimings:
    encode_ms: float
    search_ms: float
    rerank_ms: float

    @property
    def total_ms(self) -> float:
        return self.encode_ms + self.search_ms + self.rerank_ms


@dataclass
class TextToVideo:
    query: str
    method: str
    head_source: str
    rerank_depth: int  # stage-2 candidates; 0: the faiss score is final
    hits: list[ClipHit]
    timings: QueryTimings


@dataclass
class CaptionHit:
    rank: int
    caption: str
    score: float
    video_id: str  # the clip the caption was written for ("" when the corpus does not say)


@dataclass
class VideoToText:
    video: str  # a collection id or the uploaded file's name
    method: str
    corpus: str
    corpus_size: int
    hits: list[CaptionHit]
    seconds: float
    frames: list[Image.Image] = field(default_factory=list, repr=False)


@dataclass
class ExplainView:
    """A head's explanation of one (query, clip) pair, with the frames its panels talk about.

    When the head scores no patches, the explorer adds a `PatchesPanel` of the backbone's
    query-patch similarity (source "backbone"), so every clip gets a patch map.
    """

    query: str
    video_id: str
    explanation: Explanation
    frames: list[Image.Image] = field(repr=False)
    frame_times_s: list[float]
    patch_grid: tuple[int, int] | None


@dataclass
class RankChange:
    query: str
    clip: str  # the query's own clip (caption batch) or its top clip before DSL (typed queries)
    rank_before: int
    rank_after: int
    top_before: str
    top_after: str


@dataclass
class DslView:
    """Scores of a query set against clips, before and after the dual-softmax reviser."""

    method: str
    queries: list[str]
    video_ids: list[str]
    before: np.ndarray  # [Q, V] the head's scores
    after: np.ndarray  # [Q, V] dsl_revise(logit_scale * before)
    truth: list[int] | None  # column of each query's own clip, when known
    temperature: float
    changes: list[RankChange]
    note: str = DSL_NOTE


@dataclass
class CollectionInfo:
    index_dir: str  # what searches read now
    source_dir: str  # what the explorer was opened on
    uploads_dir: str
    read_only_source: bool
    videos: int
    generation: int
    backbone: str
    backbone_id: str
    device: str
    frames: int
    embed_dim: int
    patches_per_frame: int
    disk_bytes: int
    captions: str
