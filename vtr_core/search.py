"""Text-to-video search over a stored index (coarse, mean-pooled; methods add re-ranking)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .backbones import Backbone
from .errors import QueryError
from .index import VideoIndex
from .methods import meanp

QUERY_BATCH = 256


@dataclass
class SearchHit:
    rank: int
    video_id: str
    path: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def encode_queries(backbone: Backbone, queries: list[str], batch_size: int = QUERY_BATCH) -> np.ndarray:
    """Sentence vectors [Q, D] for the coarse search, encoded in batches."""
    if not queries:
        raise QueryError("no queries given")
    parts = [
        meanp.query_embedding(backbone.encode_text(queries[i : i + batch_size]).sentence).numpy()
        for i in range(0, len(queries), batch_size)
    ]
    return np.concatenate(parts)


def search_text(index: VideoIndex, backbone: Backbone, queries: list[str], top_k: int = 10) -> list[list[SearchHit]]:
    """Ranked videos for each query, best first."""
    if top_k < 1:
        raise QueryError(f"top-k must be at least 1, got {top_k}")
    scores, rows = index.search_coarse(encode_queries(backbone, queries), top_k)
    return [
        [
            SearchHit(rank=r + 1, video_id=index.videos[row].video_id, path=index.video_path(row), score=float(score))
            for r, (score, row) in enumerate(zip(score_row, row_row))
            if row >= 0
        ]
        for score_row, row_row in zip(scores, rows)
    ]
