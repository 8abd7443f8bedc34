"""Text-to-video search over a stored index with any head: coarse recall, then fine re-rank.

The head's video states come from its store (vtr_core.index.head_store): computed once per
immutable segment, the first time this head meets it, then memory-mapped, so opening a searcher
again and every query after reuse them. Stage 1 searches the head's coarse states with faiss on
the CPU, or with an exact float16 product and top-k on the GPU when the head runs there (built
once per index generation and head). Heads with a re-rank depth (eercf 50, s3ma and camoe 200)
then score only those candidates with their full similarity, from states gathered for the
candidates alone; mean pooling stops at stage 1, where its coarse score is its full score.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from vtr_core.backbones import Backbone
from vtr_core.contracts import check_search
from vtr_core.errors import QueryError
from vtr_core.index import VideoIndex, build_faiss
from vtr_core.index.head_store import HeadStore
from vtr_core.index.reader import gather
from vtr_core.methods import (
    RetrievalHead,
    State,
    head_fingerprint,
    method_class,
    select_rows,
    text_states,
)
from vtr_core.methods.states import STATE_BATCH
from vtr_core.retrieval.exact_search import TorchFlatIndex


@dataclass
class SearchHit:
    rank: int
    video_id: str
    path: str
    score: float
    coarse_rank: int  # rank after stage 1, before any re-rank
    coarse_score: float
    reranked: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchTimings:
    """Seconds spent per stage of the last search (shown in the app)."""

    encode: float = 0.0
    coarse: float = 0.0
    rerank: float = 0.0
    extra: dict = field(default_factory=dict)


class Searcher:
    """One head over one index: the head's stored states, and a coarse index built from them."""

    def __init__(self, index: VideoIndex, backbone: Backbone, head: RetrievalHead | None = None,
                 device: str | torch.device = "cpu"):
        check_search(index, backbone, head)
        self.index, self.backbone = index, backbone
        self.device = torch.device(device)  # where the head scores and, on a GPU, stage 1 runs
        self.head = (head or method_class("meanp")(backbone.embed_dim)).eval().to(self.device)
        store = HeadStore(index.directory, head_fingerprint(self.head))
        self._stored = {name: store.states(name, len(index.segment(name).coarse), self._state_batches(name))
                        for name in index.segment_names}
        coarse = self._gather("coarse", range(len(index))) if len(index) else \
            np.zeros((0, index.header.embed_dim), np.float32)
        # on a GPU exact search beats any CPU structure (1M videos: well under a millisecond)
        self.coarse_index = (TorchFlatIndex(coarse, self.device) if self.device.type == "cuda"
                             else build_faiss(coarse, index.header.faiss_factory))
        self.timings = SearchTimings()

    def _state_batches(self, segment: str) -> Callable[[], Iterator[tuple[int, dict[str, np.ndarray]]]]:
        """The head's states for every row of a segment, a batch at a time (for its store)."""
        stored = self.index.segment(segment)

        def part(array: np.ndarray | None, start: int) -> torch.Tensor | None:
            return None if array is None else torch.from_numpy(
                np.asarray(array[start : start + STATE_BATCH], np.float32)).to(self.device)

        @torch.no_grad()
        def batches() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
            for start in range(0, len(stored.coarse), STATE_BATCH):
                states = self.head.video_state(part(stored.frames, start), part(stored.patches, start),
                                               part(stored.raw, start))
                yield start, {name: value.float().cpu().numpy() for name, value in states.items()}

        return batches

    def _gather(self, name: str, rows) -> np.ndarray:
        return gather(self.index.locations(rows), lambda segment: self._stored[segment][name])

    @property
    def rerank_top_k(self) -> int:
        return int(getattr(self.head.config, "rerank_top_k", 0))

    def encode(self, queries: list[str]) -> State:
        if not queries:
            raise QueryError("no queries given")
        return text_states(self.head, self.backbone.encode_text(queries).to(self.device))

    def candidate_states(self, rows: list[int]) -> State:
        """Full video states (patch states included) for a few videos, gathered from the store."""
        names = next(iter(self._stored.values())).keys() if self._stored else ()
        return {name: torch.from_numpy(self._gather(name, rows)).to(self.device) for name in names}

    @torch.no_grad()
    def search(self, queries: list[str], top_k: int = 10, rerank_top_k: int | None = None) -> list[list[SearchHit]]:
        if top_k < 1:
            raise QueryError(f"top-k must be at least 1, got {top_k}")
        depth = self.rerank_top_k if rerank_top_k is None else rerank_top_k
        started = time.perf_counter()
        states = self.encode(queries)
        encoded = time.perf_counter()
        recall = min(len(self.index), max(top_k, depth))
        coarse_scores, coarse_rows = self.coarse_index.search(np.ascontiguousarray(states["coarse"].float().cpu().numpy(), dtype=np.float32), recall)
        searched = time.perf_counter()
        results = []
        for q, (scores, rows) in enumerate(zip(coarse_scores, coarse_rows)):
            rows, scores = rows[rows >= 0], scores[rows >= 0]
            coarse_rank = {int(r): i + 1 for i, r in enumerate(rows)}
            coarse_score = {int(r): float(s) for r, s in zip(rows, scores)}
            final = list(zip(rows.tolist(), scores.tolist(), [False] * len(rows)))
            if depth > 0 and len(rows):
                candidates = rows[:depth].tolist()
                fine = self.head.similarity(select_rows(states, [q]), self.candidate_states(candidates))[0]
                order = torch.argsort(fine, descending=True).tolist()
                final = [(candidates[i], float(fine[i]), True) for i in order] + final[len(candidates):]
            results.append([
                SearchHit(rank=i + 1, video_id=self.index.videos[row].video_id, path=self.index.video_path(row),
                          score=score, coarse_rank=coarse_rank[row], coarse_score=coarse_score[row], reranked=reranked)
                for i, (row, score, reranked) in enumerate(final[:top_k])
            ])
        self.timings = SearchTimings(encode=encoded - started, coarse=searched - encoded,
                                     rerank=time.perf_counter() - searched)
        return results


def search_text(index: VideoIndex, backbone: Backbone, queries: list[str], top_k: int = 10,
                head: RetrievalHead | None = None) -> list[list[SearchHit]]:
    """Ranked videos for each query, best first (mean pooling unless a head is given)."""
    return Searcher(index, backbone, head).search(queries, top_k)
