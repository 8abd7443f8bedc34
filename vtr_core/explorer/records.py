"""The records the explorer's services return: plain dataclasses (numbers, text, PIL images, numpy
arrays) that any front end can draw; `vtr_core.explorer.panels` turns them into charts and tables."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from vtr_core.methods import Explanation
from vtr_core.retrieval.moment_hits import time_range

WHOLE_SLACK_S = 0.05  # a range this close to both ends of its file covers the whole file

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
    moment_id: int = -1  # the best moment of the range (its thumbnail)
    start_s: float = 0.0  # the range in the video (moments of one video merged when they touch)
    end_s: float = 0.0
    whole: bool = True  # the range covers the whole file (a short clip): labelled by its id alone
    thumbnail: Image.Image | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """`video_id` for a range covering the whole file, else `video_id 1:23-1:35`."""
        return self.video_id if self.whole else f"{self.video_id} {time_range(self.start_s, self.end_s)}"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "thumbnail"}


def covers_whole(start_s: float, end_s: float, duration_s: float) -> bool:
    """Whether a range is the whole file (what a short clip's one moment is)."""
    return start_s <= WHOLE_SLACK_S and end_s >= duration_s - WHOLE_SLACK_S


@dataclass
class MomentSpan:
    """One moment of a video: its id in the index (-1 for an uploaded file's) and its range."""

    moment_id: int
    start_s: float
    end_s: float

    @property
    def label(self) -> str:
        return time_range(self.start_s, self.end_s)


@dataclass
class TimelinePoint:
    """The query's full score against one moment of a video."""

    moment_id: int
    start_s: float
    end_s: float
    score: float


@dataclass
class Timeline:
    """A query's score over one video, one point per moment in time order (`best`: the top point)."""

    query: str
    video_id: str
    method: str
    duration_s: float
    points: list[TimelinePoint]

    @property
    def best(self) -> int:
        """Position of the best-scoring moment (the first of equals)."""
        scores = [p.score for p in self.points]
        return scores.index(max(scores))


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
class MomentCaptions:
    """The best few captions of one moment (a row of a video's caption timeline)."""

    moment: MomentSpan
    hits: list[CaptionHit]


@dataclass
class VideoToText:
    """Captions ranked for one moment of a video (the whole of a short clip), and for a video of
    several moments, each moment's best captions in time order (`timeline`)."""

    video: str  # a collection id or the uploaded file's name
    method: str
    corpus: str
    corpus_size: int
    hits: list[CaptionHit]
    seconds: float
    frames: list[Image.Image] = field(default_factory=list, repr=False)
    moment: MomentSpan | None = None  # what `hits` rank captions for
    whole: bool = True  # that moment is the whole file
    asked: bool = False  # the moment was asked for (else: the one whose best caption scores highest)
    timeline: list[MomentCaptions] = field(default_factory=list)
    warning: str = ""  # one line, when only part of an uploaded file decoded


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
    frame_times_s: list[float]  # of each frame, in seconds from the start of the video
    patch_grid: tuple[int, int] | None
    moment: MomentSpan | None = None  # the moment explained
    whole: bool = True  # that moment is the whole file

    @property
    def label(self) -> str:
        """`video_id`, or `video_id 1:23-1:35` for a moment of a longer video."""
        return self.video_id if self.whole or self.moment is None else f"{self.video_id} {self.moment.label}"


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
    moments: int = 0  # moments in the index (a short clip is one)
    moment_policy: str = ""  # how files are cut into moments (vtr_core.video.moments)
