"""Text-to-moment search over a stored index with any head: coarse recall, then fine re-rank.

The head's states come from its store (vtr_core.index.head_store): computed once per immutable
segment, the first time this head meets it, then memory-mapped. Stage 1 searches the head's
coarse states with the structure its store keeps for this generation (vtr_core.retrieval.stage_one;
an exact float16 scan on a GPU). Heads with a re-rank depth (eercf 50, s3ma and camoe 200) then
score only those candidates with their full similarity, from states gathered for the candidates
alone; mean pooling stops at stage 1, where its coarse score is its full score. Results are
moments, looked up in the catalogue by id: opening and querying never load every record.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from vtr_core.backbones import Backbone
from vtr_core.contracts import check_search
from vtr_core.errors import QueryError
from vtr_core.index import MomentRecord, VideoIndex
from vtr_core.index.head_store import HeadStore
from vtr_core.index.segments import gather
from vtr_core.methods import (
    RetrievalHead,
    State,
    head_fingerprint,
    method_class,
    select_rows,
    text_states,
)
from vtr_core.methods.states import STATE_BATCH
from vtr_core.retrieval.moment_hits import group_hits, pool_size
from vtr_core.retrieval.stage_one import open_stage_one
from vtr_core.storage import warm_file


@dataclass
class SearchHit:
    rank: int
    video_id: str
    path: str
    score: float
    coarse_rank: int  # rank after stage 1, before any re-rank
    coarse_score: float
    reranked: bool
    moment_id: int = -1
    start_s: float = 0.0  # the moment's time range in its video
    end_s: float = 0.0

    def to_dict(self) -> dict:
        """A JSON line's hit: the moment as `moment` (its id), `start` and `end` (seconds in the video)."""
        fields = asdict(self)
        renamed = {"moment_id": "moment", "start_s": "start", "end_s": "end"}
        return {renamed.get(k, k): v for k, v in fields.items()}


@dataclass
class SearchTimings:
    """Seconds spent per stage of the last search (shown in the app)."""

    encode: float = 0.0
    coarse: float = 0.0
    rerank: float = 0.0
    extra: dict = field(default_factory=dict)


class Searcher:
    """One head over one index: the head's stored states, and its stage-1 structure."""

    def __init__(self, index: VideoIndex, backbone: Backbone, head: RetrievalHead | None = None,
                 device: str | torch.device = "cpu"):
        check_search(index, backbone, head)
        self.index, self.backbone = index, backbone
        self.device = torch.device(device)  # where the head scores and, on a GPU, stage 1 runs
        self.head = (head or method_class("meanp")(backbone.embed_dim)).eval().to(self.device)
        self.store = HeadStore(index.directory, head_fingerprint(self.head))
        segments = index.catalogue.segments(index.generation)
        self._rows = {name: rows for name, rows, _ in segments}
        self._merged_from = {name: merged for name, _, merged in segments if merged}
        self._stored: dict[str, dict[str, np.ndarray]] = {}
        # a head that re-ranks keeps every state for its candidates; one that does not, its coarse
        # states only (mean pooling's per-frame states would be 18 GB at 1M moments, for nothing)
        self.keeps_all_states = self.rerank_top_k > 0
        self.stage_one = open_stage_one(index, self.store, self._coarse_of, index.header.embed_dim, self.device)
        self.timings = SearchTimings()
        # the mapped structure and the catalogue, read into the page cache behind the first queries
        warm = [p for p in (self.stage_one.path, index.catalogue.path) if p is not None]
        self._warming = threading.Thread(target=lambda: [warm_file(p) for p in warm], name="warm", daemon=True)
        self._warming.start()

    def warm(self) -> None:
        """Wait until the files a query reads at random (the stage-1 structure, the catalogue) have
        been read through once: steady-state latency from then on, cold-start latency before."""
        self._warming.join()

    # -- the head's states, from its store -----------------------------------------------------
    def segment_states(self, segment: str) -> dict[str, np.ndarray]:
        """The head's states for every row of a segment (computed and stored on first use)."""
        if segment not in self._stored:
            self._stored[segment] = self.store.states(segment, self._rows[segment], self._state_batches(segment))
        return self._stored[segment]

    def _state_batches(self, segment: str) -> Callable[[], Iterator[tuple[int, dict[str, np.ndarray]]]]:
        """The head's states for every row of a segment, a batch at a time (for its store). A merged
        segment's rows are its sources' rows in order: the states of sources this head has stored
        are copied, the others computed."""
        stored = self.index.segment(segment)
        parts = self._merged_from.get(segment) or [[None, self._rows[segment]]]

        def part(array: np.ndarray | None, start: int, stop: int) -> torch.Tensor | None:
            if array is None:
                return None
            return torch.from_numpy(np.asarray(array[start:stop], np.float32)).to(self.device)

        @torch.no_grad()
        def batches() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
            offset = 0
            for source, rows in parts:
                ready = self.store.read(source) if source is not None else None
                for start in range(offset, offset + rows, STATE_BATCH):
                    stop = min(offset + rows, start + STATE_BATCH)
                    if ready is not None:
                        yield start, {name: np.asarray(v[start - offset : stop - offset]) for name, v in ready.items()
                                      if self._kept(name)}
                        continue
                    states = self.head.video_state(part(stored.frames, start, stop), part(stored.patches, start, stop),
                                                   part(stored.raw, start, stop))
                    yield start, {name: value.float().cpu().numpy() for name, value in states.items()
                                  if self._kept(name)}
                offset += rows

        return batches

    def _kept(self, state: str) -> bool:
        return self.keeps_all_states or state == "coarse"

    def _coarse_of(self, segments: Sequence[str], rows: np.ndarray) -> np.ndarray:
        return gather(list(zip(segments, rows.tolist())), lambda s: self.segment_states(s)["coarse"])

    @property
    def rerank_top_k(self) -> int:
        return int(getattr(self.head.config, "rerank_top_k", 0))

    def encode(self, queries: list[str]) -> State:
        if not queries:
            raise QueryError("no queries given")
        return text_states(self.head, self.backbone.encode_text(queries).to(self.device))

    @torch.no_grad()
    def candidate_states(self, moment_ids: Sequence[int]) -> State:
        """Full video states (patch states included) of a few moments: gathered from the store, or,
        for a head that keeps only coarse states there, computed from the moments' stored features."""
        return self._states_of(moment_ids, self.index.lookup(moment_ids))

    def _states_of(self, moment_ids: Sequence[int], found: dict) -> State:
        """`candidate_states` with the moments already looked up (a search looks its ids up once)."""
        locations = [(found[int(i)][0].segment, found[int(i)][0].row) for i in moment_ids]
        if not locations:
            return {}
        if not self.keeps_all_states:
            features = {part: self._features(locations, part) for part in ("frames", "patches", "raw")}
            return self.head.video_state(features["frames"], features["patches"], features["raw"])
        names = self.segment_states(locations[0][0]).keys()
        return {name: torch.from_numpy(gather(locations, lambda s: self.segment_states(s)[name])).to(self.device)
                for name in names}

    def _features(self, locations: list[tuple[str, int]], part: str) -> torch.Tensor | None:
        if getattr(self.index.segment(locations[0][0]), part) is None:
            return None
        return torch.from_numpy(gather(locations, lambda s: getattr(self.index.segment(s), part))).to(self.device)

    @torch.no_grad()
    def search(self, queries: list[str], top_k: int = 10, rerank_top_k: int | None = None, per_video: bool = False,
               merge: bool = True) -> list[list[SearchHit]]:
        """The `top_k` best ranges for each query: moments, with adjacent or overlapping hits of one
        video merged into one range (`merge`), or each video's best range only (`per_video`)."""
        if top_k < 1:
            raise QueryError(f"top-k must be at least 1, got {top_k}")
        started = time.perf_counter()
        states = self.encode(queries)
        encoded = time.perf_counter()
        results = self.search_states(states, top_k, rerank_top_k, per_video, merge)
        self.timings.encode = encoded - started
        return results

    @torch.no_grad()
    def search_states(self, states: State, top_k: int, rerank_top_k: int | None = None, per_video: bool = False,
                      merge: bool = True) -> list[list[SearchHit]]:
        """Search with the head's text states of the queries (what `search` encodes)."""
        ranked = self.ranked_moments(states, pool_size(top_k, merge, per_video), rerank_top_k)
        return [group_hits(hits, top_k, merge, per_video) for hits in ranked]

    @torch.no_grad()
    def ranked_moments(self, states: State, top_k: int, rerank_top_k: int | None = None) -> list[list[SearchHit]]:
        """The `top_k` best moments for each query, each its own hit (nothing merged)."""
        depth = self.rerank_top_k if rerank_top_k is None else rerank_top_k
        started = time.perf_counter()
        recall = max(top_k, depth)
        coarse = np.ascontiguousarray(states["coarse"].float().cpu().numpy(), dtype=np.float32)
        coarse_scores, coarse_ids = self.stage_one.search(coarse, recall)
        searched = time.perf_counter()
        results = []
        for q, (scores, ids) in enumerate(zip(coarse_scores, coarse_ids)):
            ids, scores = ids[ids >= 0], scores[ids >= 0]
            coarse_rank = {int(i): r + 1 for r, i in enumerate(ids)}
            coarse_score = {int(i): float(s) for i, s in zip(ids, scores)}
            final = list(zip(ids.tolist(), scores.tolist(), [False] * len(ids)))
            found = self.index.lookup(ids[: max(depth, top_k)].tolist())  # the candidates and every hit
            if depth > 0 and len(ids):
                candidates = ids[:depth].tolist()
                fine = self.head.similarity(select_rows(states, [q]), self._states_of(candidates, found))[0]
                order = torch.argsort(fine, descending=True).tolist()
                final = [(candidates[i], float(fine[i]), True) for i in order] + final[len(candidates):]
            results.append([
                SearchHit(rank=r + 1, video_id=found[i][0].video_id, path=found[i][1], score=score,
                          coarse_rank=coarse_rank[i], coarse_score=coarse_score[i], reranked=reranked,
                          moment_id=i, start_s=found[i][0].start_s, end_s=found[i][0].end_s)
                for r, (i, score, reranked) in enumerate(final[:top_k])
            ])
        self.timings = SearchTimings(coarse=searched - started, rerank=time.perf_counter() - searched)
        return results

    @torch.no_grad()
    def moment_scores(self, states: State, video_id: str) -> list[tuple[MomentRecord, float]]:
        """The head's full score of one query (the first of `states`) against every moment of one
        video, in time order: the data of a timeline of the query over the video."""
        moments = [self.index.moments[row] for row in self.index.rows_of(video_id)]
        if not moments:
            return []
        ids = [m.moment_id for m in moments]
        scores = self.head.similarity(select_rows(states, [0]), self.candidate_states(ids))[0]
        return list(zip(moments, scores.float().cpu().tolist()))


def search_text(index: VideoIndex, backbone: Backbone, queries: list[str], top_k: int = 10,
                head: RetrievalHead | None = None) -> list[list[SearchHit]]:
    """Ranked moments for each query, best first (mean pooling unless a head is given)."""
    return Searcher(index, backbone, head).search(queries, top_k)
