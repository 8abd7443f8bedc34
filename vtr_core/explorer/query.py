"""The queries behind the explorer: text to video, video to text, explanations and the DSL matrix.

Heads are loaded lazily (each method's shipped checkpoint for the backbone, else zero-shot) and
cached with their searchers under a lock, so concurrent requests share one copy; a searcher
belongs to one index generation and a new one is built when the collection moves on. Nothing
here knows about Gradio, and nothing names a method: heads are used through their interface.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vtr_core.contracts import clean_query
from vtr_core.errors import QueryError, VtrError
from vtr_core.explorer.collection import CollectionService
from vtr_core.explorer.corpus import CaptionCorpus, load_corpus
from vtr_core.explorer.records import (
    CaptionHit,
    ClipHit,
    DslView,
    ExplainView,
    QueryTimings,
    RankChange,
    TextToVideo,
    VideoToText,
)
from vtr_core.index import VideoIndex
from vtr_core.methods import (
    METHODS,
    RetrievalHead,
    State,
    best_shipped_method,
    concat_states,
    resolve_head,
    text_states,
)
from vtr_core.methods.explanation import PatchesPanel
from vtr_core.retrieval.dsl import dsl_revise
from vtr_core.retrieval.ranking import all_pair_scores
from vtr_core.retrieval.search import Searcher
from vtr_core.video import read_video

MAX_TOP_K = 100
MAX_DSL_QUERIES = 24
TEXT_BATCH = 256
MAX_CACHED_CORPORA = 16
BACKBONE_PATCH_TEMPERATURE = 0.1


@dataclass
class _Loaded:
    searcher: Searcher
    source: str
    lock: threading.Lock = field(default_factory=threading.Lock)


def rank_of(row: np.ndarray, column: int) -> int:
    """1-based rank of one column in a score row (ties count against it)."""
    return int((row > row[column]).sum() + (row[:column] == row[column]).sum() + 1)


class QueryService:
    """Every read-only question a UI asks of one collection, with any method."""

    def __init__(self, collection: CollectionService):
        self.collection = collection
        self.backbone, self.device = collection.backbone, collection.backbone.device
        self._lock = threading.RLock()  # heads, searchers, caption states
        self._heads: dict[str, tuple[RetrievalHead, str]] = {}
        self._searchers: dict[tuple[str, int], _Loaded] = {}
        self._text_cache: dict[tuple[str, str], State] = {}

    @property
    def methods(self) -> list[str]:
        return list(METHODS)

    @property
    def default_method(self) -> str:
        """The shipped head with the best validation score (see `best_shipped_method`)."""
        return best_shipped_method(self.backbone)

    # -- heads and searchers -------------------------------------------------------------------
    def head(self, method: str) -> tuple[RetrievalHead, str]:
        """The method's shipped head for this backbone (else zero-shot), and where it came from."""
        if method not in METHODS:
            raise VtrError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
        with self._lock:
            if method not in self._heads:
                corpus = self.collection.corpus().captions if self.collection.captions_path else None
                head, source = resolve_head(method, self.backbone, num_frames=self.collection.index.header.num_frames,
                                            corpus=corpus)
                self._heads[method] = (head.eval().to(self.device), source)
            return self._heads[method]

    def _loaded(self, method: str) -> _Loaded:
        index = self.collection.index
        key = (method, index.generation)
        with self._lock:
            if key not in self._searchers:
                head, source = self.head(method)
                # searchers of older generations are dropped: their states describe another index
                self._searchers = {k: v for k, v in self._searchers.items() if k[1] == index.generation}
                self._searchers[key] = _Loaded(Searcher(index, self.backbone, head, device=self.device), source)
            return self._searchers[key]

    # -- text to video -------------------------------------------------------------------------
    def text_to_video(self, query: str, method: str = "meanp", top_k: int = 10) -> TextToVideo:
        query = clean_query(query)
        top_k = max(1, min(int(top_k), MAX_TOP_K))
        loaded = self._loaded(method)
        searcher = loaded.searcher
        with loaded.lock:  # the searcher keeps the timings of its last search
            hits = searcher.search([query], top_k)[0]
            t = searcher.timings
        index = searcher.index
        return TextToVideo(
            query=query, method=method, head_source=loaded.source, rerank_depth=searcher.rerank_top_k,
            hits=[ClipHit(h.rank, h.video_id, h.path, h.score, h.coarse_rank, h.coarse_score, h.reranked,
                          self.collection.thumbnail(index, index.row_of_moment(h.moment_id))) for h in hits],
            timings=QueryTimings(1e3 * t.encode, 1e3 * t.coarse, 1e3 * t.rerank),
        )

    # -- video to text -------------------------------------------------------------------------
    def _caption_states(self, method: str, corpus: CaptionCorpus) -> State:
        key = (method, corpus.key)
        with self._lock:
            if key not in self._text_cache:
                head, _ = self.head(method)
                parts = [text_states(head, self.backbone.encode_text(corpus.captions[i:i + TEXT_BATCH]).to(self.device))
                         for i in range(0, len(corpus), TEXT_BATCH)]
                if len(self._text_cache) >= MAX_CACHED_CORPORA:
                    self._text_cache.clear()
                self._text_cache[key] = concat_states(parts)
            return self._text_cache[key]

    @torch.no_grad()
    def _clip_state(self, video: str, method: str) -> tuple[State, str, list[Image.Image]]:
        """States of a collection clip (by id) or of a video file (decoded and encoded now)."""
        head, _ = self.head(method)
        index = self.collection.index
        if video in index:
            row = index.row_of(video)
            states = self._loaded(method).searcher.candidate_states([index.moments[row].moment_id])
            return states, video, self.collection.frames(index, row)
        path = Path(video)
        if not path.is_file():
            raise VtrError(f"{video}: no such clip in the collection and no such file")
        self.collection.check_upload(path)
        sampled = read_video(path, index.header.num_frames)
        encoded = self.backbone.encode_frames(sampled.frames)
        patches = encoded.patches[None].to(self.device) if index.header.store_patches and encoded.patches is not None else None
        raw = encoded.raw[None].to(self.device) if encoded.raw is not None else None
        state = head.video_state(encoded.frame[None].to(self.device), patches, raw)
        return state, path.name, [Image.fromarray(f) for f in sampled.frames]

    @torch.no_grad()
    def video_to_text(self, video: str, method: str = "meanp", corpus: str | os.PathLike | None = None,
                      top_k: int = 10) -> VideoToText:
        """Captions ranked for a clip: of the collection by default, or of a .txt/.jsonl file."""
        started = time.perf_counter()
        if not video:
            raise VtrError("no clip given: upload a video or pick one from the collection")
        captions = load_corpus(corpus, Path(str(corpus)).name) if corpus else self.collection.corpus()
        state, label, frames = self._clip_state(str(video), method)
        head, _ = self.head(method)
        scores = all_pair_scores(head, self._caption_states(method, captions), state)[:, 0].float().cpu()
        order = torch.argsort(scores, descending=True)[: max(1, min(int(top_k), MAX_TOP_K))].tolist()
        hits = [CaptionHit(i + 1, captions.captions[c], float(scores[c]), captions.video_ids[c])
                for i, c in enumerate(order)]
        return VideoToText(label, method, captions.name, len(captions), hits, time.perf_counter() - started, frames)

    # -- explanations --------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, query: str, video_id: str, method: str = "meanp") -> ExplainView:
        """Why a clip scored what it did for a query: the head's own panels, plus frames.

        A head that scores no patches gets the backbone's query-patch similarity as its patch
        panel (source "backbone"), so the patch map is there for every method.
        """
        query = clean_query(query)
        index = self.collection.index
        row = self.collection.row(index, video_id)
        head, _ = self.head(method)
        text = self.backbone.encode_text([query]).to(self.device)
        video = self._loaded(method).searcher.candidate_states([index.moments[row].moment_id])
        explanation = head.explain(head.text_state(text), video, text)
        grid = tuple(index.header.patch_grid) if index.header.store_patches and index.header.patch_grid else None
        if explanation.panel(PatchesPanel) is None and grid:
            tokens = F.normalize(torch.from_numpy(index.patch_tokens([row])[0]).float(), dim=-1)
            similarity = tokens @ F.normalize(text.sentence[0].float().cpu(), dim=-1)
            weights = torch.softmax(similarity / BACKBONE_PATCH_TEMPERATURE, -1).tolist()
            explanation.panels.append(PatchesPanel(weights, source="backbone"))
        return ExplainView(query, video_id, explanation, self.collection.frames(index, row),
                           index.moments[row].frame_times_s, grid)

    # -- the dual softmax over a query set -----------------------------------------------------
    def _dsl_rows(self, index: VideoIndex, method: str, queries: list[str] | None,
                  count: int) -> tuple[list[str], list[int], list[int] | None]:
        """(queries, clip rows, each query's own column or None): typed queries against the union
        of their top-3 clips, else the first caption of `count` collection clips (truth: diagonal)."""
        queries = [clean_query(q) for q in queries if q.strip()] if queries else []
        if queries:
            if not 2 <= len(queries) <= MAX_DSL_QUERIES:
                raise QueryError(f"DSL revises a whole query set: give 2 to {MAX_DSL_QUERIES} queries, one per line")
            rows: list[int] = []
            for result in self._loaded(method).searcher.search(queries, top_k=3):
                rows += [index.row_of_moment(h.moment_id) for h in result if index.row_of_moment(h.moment_id) not in rows]
            return queries, rows[: 2 * MAX_DSL_QUERIES], None
        corpus = self.collection.corpus()
        pairs = [(v.video_id, corpus.captions_of(v.video_id)) for v in index.videos]
        pairs = [(vid, caps[0]) for vid, caps in pairs if caps][: max(2, min(count, MAX_DSL_QUERIES))]
        if len(pairs) < 2:
            raise VtrError("the collection's captions name fewer than two indexed clips: type queries instead")
        return [caption for _, caption in pairs], [index.row_of(vid) for vid, _ in pairs], list(range(len(pairs)))

    @torch.no_grad()
    def dsl_matrix(self, method: str = "meanp", queries: list[str] | None = None, count: int = 8,
                   temperature: float = 1.0) -> DslView:
        """Scores of a query set before and after the dual-softmax reviser, with rank changes."""
        head, _ = self.head(method)
        index = self.collection.index
        queries, rows, truth = self._dsl_rows(index, method, queries, count)
        query_states = text_states(head, self.backbone.encode_text(queries).to(self.device))
        video = self._loaded(method).searcher.candidate_states([index.moments[r].moment_id for r in rows])
        before = all_pair_scores(head, query_states, video)
        after = dsl_revise(float(head.scale) * before, temperature)
        before, after = before.float().cpu().numpy(), after.float().cpu().numpy()
        ids = [index.moments[r].video_id for r in rows]
        changes = []
        for q, query in enumerate(queries):
            clip = truth[q] if truth else int(before[q].argmax())
            changes.append(RankChange(query, ids[clip], rank_of(before[q], clip), rank_of(after[q], clip),
                                      ids[int(before[q].argmax())], ids[int(after[q].argmax())]))
        return DslView(method, queries, ids, before, after, truth, temperature, changes)
