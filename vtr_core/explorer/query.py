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

from vtr_core.contracts import clean_query
from vtr_core.errors import QueryError, VtrError
from vtr_core.explorer.clip_moments import ClipMoments, collection_moments, upload_moments
from vtr_core.explorer.collection import CollectionService
from vtr_core.explorer.corpus import CaptionCorpus, load_corpus
from vtr_core.explorer.records import (
    CaptionHit,
    ClipHit,
    DslView,
    MomentCaptions,
    ExplainView,
    MomentSpan,
    QueryTimings,
    RankChange,
    TextToVideo,
    Timeline,
    TimelinePoint,
    VideoToText,
    covers_whole,
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

MAX_TOP_K = 100
MAX_DSL_QUERIES = 24
TEXT_BATCH = 256
MAX_CACHED_CORPORA = 16
TIMELINE_CAPTIONS = 3  # captions per moment in a clip's caption timeline
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
    def text_to_video(self, query: str, method: str = "meanp", top_k: int = 10, per_video: bool = True,
                      merge: bool = False) -> TextToVideo:
        """The best moments for a query: each video's best (`per_video`, the default) or every
        moment; with `merge`, a video's hits that touch become one range (the best one's score).

        Merging is off by default: when the pool of moments a search ranks holds most of a video's
        moments (a small collection), its windows all touch and merge into the whole video, and the
        range no longer says where the match is."""
        query = clean_query(query)
        top_k = max(1, min(int(top_k), MAX_TOP_K))
        loaded = self._loaded(method)
        searcher = loaded.searcher
        with loaded.lock:  # the searcher keeps the timings of its last search
            hits = searcher.search([query], top_k, per_video=per_video, merge=merge)[0]
            t = searcher.timings
        index = searcher.index
        return TextToVideo(
            query=query, method=method, head_source=loaded.source, rerank_depth=searcher.rerank_top_k,
            hits=[ClipHit(h.rank, h.video_id, h.path, h.score, h.coarse_rank, h.coarse_score, h.reranked,
                          h.moment_id, h.start_s, h.end_s,
                          covers_whole(h.start_s, h.end_s, index.video(h.video_id).duration_s),
                          self.collection.thumbnail(index, index.row_of_moment(h.moment_id))) for h in hits],
            timings=QueryTimings(1e3 * t.encode, 1e3 * t.coarse, 1e3 * t.rerank),
        )

    @torch.no_grad()
    def timeline(self, query: str, video_id: str, method: str = "meanp") -> Timeline:
        """The query's full score against every moment of one video, in time order."""
        query = clean_query(query)
        index = self.collection.index
        duration = self.collection.video(index, video_id).duration_s
        searcher = self._loaded(method).searcher
        pairs = searcher.moment_scores(searcher.encode([query]), video_id)
        points = [TimelinePoint(m.moment_id, m.start_s, m.end_s, float(score)) for m, score in pairs]
        return Timeline(query, video_id, method, duration, points)

    def moments(self, video_id: str) -> list[MomentSpan]:
        """A collection video's moments, in time order."""
        index = self.collection.index
        self.collection.video(index, video_id)
        moments = [index.moments[row] for row in index.rows_of(video_id)]
        return [MomentSpan(m.moment_id, m.start_s, m.end_s) for m in moments]

    def _moment_row(self, index: VideoIndex, video_id: str, moment_id: int) -> int:
        """The row of one of a video's moments; a moment of another video is an input error."""
        try:
            row = index.row_of_moment(int(moment_id))
        except KeyError:
            row = -1
        if row < 0 or index.moments[row].video_id != video_id:
            raise VtrError(f"no moment {moment_id} in clip {video_id!r}: pick one of its moments")
        return row

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

    def _clip_moments(self, video: str, method: str) -> ClipMoments:
        """A collection clip's moments (by id), or those of a video file (decoded and encoded now)."""
        index = self.collection.index
        if video in index:
            return collection_moments(self.collection, self._loaded(method).searcher, video)
        path = Path(video)
        if not path.is_file():
            raise VtrError(f"{video}: no such clip in the collection and no such file")
        self.collection.check_upload(path)
        head, _ = self.head(method)
        return upload_moments(self.collection, self.backbone, head, path, self.device)

    @torch.no_grad()
    def video_to_text(self, video: str, method: str = "meanp", corpus: str | os.PathLike | None = None,
                      top_k: int = 10, moment_id: int | None = None) -> VideoToText:
        """Captions ranked for one moment of a clip (the whole of a short one): the collection's
        captions by default, or a .txt/.jsonl file's. A clip of several moments also gets each
        moment's best captions in time order; the moment ranked is `moment_id` (a collection
        clip's), else the one whose best caption scores highest."""
        started = time.perf_counter()
        if not video:
            raise VtrError("no clip given: upload a video or pick one from the collection")
        captions = load_corpus(corpus, Path(str(corpus)).name) if corpus else self.collection.corpus()
        clip = self._clip_moments(str(video), method)
        head, _ = self.head(method)
        scores = all_pair_scores(head, self._caption_states(method, captions), clip.states).float().cpu()  # [C, N]
        asked = moment_id is not None and int(moment_id) >= 0 and bool(clip.rows)  # an upload's are not asked for
        if asked:
            positions = {span.moment_id: n for n, span in enumerate(clip.spans)}
            if int(moment_id) not in positions:
                raise VtrError(f"no moment {moment_id} in clip {clip.label!r}: pick one of its moments")
            chosen = positions[int(moment_id)]
        else:
            chosen = int(scores.max(0).values.argmax())

        def ranked(column: int, count: int) -> list[CaptionHit]:
            order = torch.argsort(scores[:, column], descending=True)[: max(1, min(int(count), MAX_TOP_K))].tolist()
            return [CaptionHit(i + 1, captions.captions[c], float(scores[c, column]), captions.video_ids[c])
                    for i, c in enumerate(order)]

        timeline = []
        if len(clip.spans) > 1:
            timeline = [MomentCaptions(span, ranked(n, TIMELINE_CAPTIONS)) for n, span in enumerate(clip.spans)]
        return VideoToText(clip.label, method, captions.name, len(captions), ranked(chosen, top_k),
                           time.perf_counter() - started, clip.frames_of(chosen, self.collection), clip.spans[chosen],
                           clip.whole(chosen), asked, timeline, clip.warning)

    # -- explanations --------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, query: str, video_id: str, method: str = "meanp", moment_id: int | None = None) -> ExplainView:
        """Why one moment of a video scored what it did for a query: the head's own panels, plus
        its frames (timed in the video). Default moment: the video's best for the query.

        A head that scores no patches gets the backbone's query-patch similarity as its patch
        panel (source "backbone"), so the patch map is there for every method.
        """
        query = clean_query(query)
        index = self.collection.index
        video = self.collection.video(index, video_id)
        if moment_id is None or int(moment_id) < 0:
            timeline = self.timeline(query, video_id, method)
            moment_id = timeline.points[timeline.best].moment_id
        row = self._moment_row(index, video_id, moment_id)
        moment = index.moments[row]
        head, _ = self.head(method)
        text = self.backbone.encode_text([query]).to(self.device)
        states = self._loaded(method).searcher.candidate_states([moment.moment_id])
        explanation = head.explain(head.text_state(text), states, text)
        grid = tuple(index.header.patch_grid) if index.header.store_patches and index.header.patch_grid else None
        if explanation.panel(PatchesPanel) is None and grid:
            tokens = F.normalize(torch.from_numpy(index.patch_tokens([row])[0]).float(), dim=-1)
            similarity = tokens @ F.normalize(text.sentence[0].float().cpu(), dim=-1)
            weights = torch.softmax(similarity / BACKBONE_PATCH_TEMPERATURE, -1).tolist()
            explanation.panels.append(PatchesPanel(weights, source="backbone"))
        return ExplainView(query, video_id, explanation, self.collection.frames(index, row), list(moment.frame_times_s),
                           grid, MomentSpan(moment.moment_id, moment.start_s, moment.end_s),
                           covers_whole(moment.start_s, moment.end_s, video.duration_s))

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
                found = [index.row_of_moment(h.moment_id) for h in result]
                rows += [row for row in found if row not in rows]
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
