"""The explorer service behind app.py: one index, its backbone and the heads, for a UI to call.

`Explorer` opens an index with the backbone it was built with, loads heads lazily (the shipped
checkpoint of each method, else zero-shot) and caches them and their searchers under a lock, so
concurrent requests share one copy. Every method returns plain records (dataclasses, PIL
images, numpy arrays); `vtr_core.explorer.panels` turns them into charts. Nothing here knows about Gradio.

Writes never touch a read-only or bundled index (precomputed/): the first write (indexing a
folder, adding a clip) copies it to a user collection under the work directory (default
`~/.cache/vtr_core/explorer/`, `$VTR_CACHE_DIR`) and later sessions open that copy. Uploaded clips
are copied into the collection's `uploads/` folder (for a writable index: `INDEX-uploads/` next
to it), never into assets/.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vtr_core.backbones import (
    resolve_device,
)
from vtr_core.contracts import clean_query, open_with_backbone
from vtr_core.errors import QueryError, VideoError, VtrError
from vtr_core.explorer.corpus import (
    CaptionCorpus,
    find_collection_captions,
    load_corpus,
)
from vtr_core.index import MANIFEST, VideoIndex
from vtr_core.indexing import indexer
from vtr_core.methods import (
    METHODS,
    Explanation,
    RetrievalHead,
    State,
    best_shipped_method,
    concat_states,
    resolve_head,
    text_states,
)
from vtr_core.resources import bundled_dir, demo_index_dir, results_json
from vtr_core.retrieval.dsl import dsl_revise
from vtr_core.retrieval.ranking import all_pair_scores
from vtr_core.retrieval.search import Searcher
from vtr_core.storage import atomic_write_json, cache_dir, file_sha256
from vtr_core.video.decode import is_video_path, read_video, split_strip

MAX_UPLOAD_BYTES = 500 * 1024 * 1024  # a clip uploaded from a browser (the app's --max-upload-mb)
MAX_TOP_K = 100
MAX_DSL_QUERIES = 24
MAX_THUMBNAILS = 4096  # cached in memory (about 40 KB each)
TEXT_BATCH = 256
BACKBONE_PATCH_TEMPERATURE = 0.1
DSL_NOTE = ("DSL is transductive: it rescales each score by a softmax over the whole query set (each clip's "
            "column), so it needs every query at once and cannot serve a single online query.")

ProgressFn = Callable[[int, int, str], None]


# -- records -----------------------------------------------------------------------------------
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
    """A head's explanation of one (query, clip) pair, with the frames it talks about."""

    query: str
    video_id: str
    explanation: Explanation
    frames: list[Image.Image] = field(repr=False)
    frame_times_s: list[float]
    patch_grid: tuple[int, int] | None
    patch_weights: list[list[float]] | None  # [T, P]
    patch_source: str  # "head" (the method's attention), "backbone" (query-patch similarity) or ""


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


@dataclass
class _Loaded:
    searcher: Searcher
    source: str
    lock: threading.Lock = field(default_factory=threading.Lock)


def rank_of(row: np.ndarray, column: int) -> int:
    """1-based rank of one column in a score row (ties count against it)."""
    return int((row > row[column]).sum() + (row[:column] == row[column]).sum() + 1)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "clip"


class Explorer:
    """Search, video-to-text, explanations and collection management over one index."""

    def __init__(self, index_dir: str | os.PathLike | None = None, device: str = "auto", backbone: str | None = None,
                 captions: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
                 video_roots: Sequence[str | os.PathLike] = (), max_upload_bytes: int = MAX_UPLOAD_BYTES):
        self.source_dir = Path(index_dir or demo_index_dir()).resolve()
        self.device = resolve_device(device)
        _, self.backbone = open_with_backbone(self.source_dir, backbone, self.device)
        self.read_only = self.source_dir.is_relative_to(bundled_dir().resolve()) or not os.access(self.source_dir, os.W_OK)
        root = Path(workdir) if workdir else cache_dir() / "explorer"
        if self.read_only:
            self.user_dir = root / f"{self.source_dir.name}-{hashlib.sha256(str(self.source_dir).encode()).hexdigest()[:8]}"
            self.uploads_dir = self.user_dir / "uploads"
        else:
            self.user_dir = self.source_dir
            self.uploads_dir = self.source_dir.parent / f"{self.source_dir.name}-uploads"
        self._lock = threading.RLock()  # loading heads, searchers, corpora
        self._write_lock = threading.Lock()  # one indexing job at a time in this process
        self._heads: dict[str, tuple[RetrievalHead, str]] = {}
        self._searchers: dict[tuple[str, int], _Loaded] = {}
        self._text_cache: dict[tuple[str, str], State] = {}
        self._thumbs: dict[tuple, Image.Image] = {}
        self._index_dir = self._existing_copy() or self.source_dir
        self._index = VideoIndex.open(self._index_dir, backbone_id=self.backbone.id, embed_dim=self.backbone.embed_dim)
        self._manifest_mtime = self._mtime()
        self._captions_path = Path(captions) if captions else find_collection_captions(
            self.source_dir, [self._index.video_path(r) for r in range(len(self._index))])
        self._collection_corpus: CaptionCorpus | None = None
        self.max_upload_bytes = max_upload_bytes
        # folders a browser may ask to index: the ones given, plus those already holding the clips
        self.video_roots = sorted({str(Path(r).expanduser().resolve()) for r in video_roots} | set(self.media_roots()))

    # -- the index, kept current -----------------------------------------------------------------
    def _mtime(self) -> int:
        try:
            return (self._index_dir / MANIFEST).stat().st_mtime_ns
        except OSError:
            return 0

    @property
    def index(self) -> VideoIndex:
        """The newest committed generation (re-read when the manifest changes, e.g. by the CLI)."""
        if self._mtime() != self._manifest_mtime:
            self.reload()
        return self._index

    def reload(self) -> None:
        with self._lock:
            self._manifest_mtime = self._mtime()
            self._index = VideoIndex.open(self._index_dir, backbone_id=self.backbone.id, embed_dim=self.backbone.embed_dim)
            generation = self._index.generation
            self._searchers = {k: v for k, v in self._searchers.items() if k[1] == generation}

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
                corpus = self.collection_corpus().captions if self._captions_path else None
                head, source = resolve_head(method, self.backbone, num_frames=self._index.header.num_frames,
                                            corpus=corpus)
                self._heads[method] = (head.eval().to(self.device), source)
            return self._heads[method]

    def _loaded(self, method: str) -> _Loaded:
        index = self.index
        key = (method, index.generation)
        with self._lock:
            if key not in self._searchers:
                head, source = self.head(method)
                self._searchers[key] = _Loaded(Searcher(index, self.backbone, head, device=self.device), source)
            return self._searchers[key]

    def _row(self, index: VideoIndex, video_id: str) -> int:
        try:
            return index.row_of(video_id)
        except KeyError:
            raise VtrError(f"no clip {video_id!r} in the collection") from None

    def thumbnail(self, index: VideoIndex, row: int) -> Image.Image:
        """The middle sampled frame of a clip, from its stored frame strip."""
        record = index.videos[row]
        key = (str(index.directory), record.segment, record.row)
        if key not in self._thumbs:
            if len(self._thumbs) > MAX_THUMBNAILS:
                self._thumbs.clear()
            frames = self.frames(index, row)
            self._thumbs[key] = frames[len(frames) // 2]
        return self._thumbs[key]

    def frames(self, index: VideoIndex, row: int) -> list[Image.Image]:
        try:
            strip = Image.open(io.BytesIO(index.frame_strip_jpeg(row))).convert("RGB")
        except OSError:
            return [Image.new("RGB", (128, 96), (200, 200, 200))] * index.header.num_frames
        return split_strip(strip, index.header.num_frames)

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
                          self.thumbnail(index, index.row_of(h.video_id))) for h in hits],
            timings=QueryTimings(1e3 * t.encode, 1e3 * t.coarse, 1e3 * t.rerank),
        )

    # -- caption corpora and video to text ------------------------------------------------------
    def collection_corpus(self) -> CaptionCorpus:
        if self._captions_path is None:
            raise VtrError("this collection has no captions file: upload a .txt or .jsonl corpus")
        with self._lock:
            if self._collection_corpus is None:
                self._collection_corpus = load_corpus(self._captions_path)
            return self._collection_corpus

    def example_queries(self, count: int = 6) -> list[str]:
        try:
            corpus = self.collection_corpus()
        except VtrError:
            return ["a person walks down the street", "a dog runs on the grass", "a car drives on a road"]
        seen, examples = set(), []
        for caption, video_id in zip(corpus.captions, corpus.video_ids):
            if video_id not in seen:
                seen.add(video_id)
                examples.append(caption)
        step = max(1, len(examples) // count)
        return examples[::step][:count]

    def _caption_states(self, method: str, corpus: CaptionCorpus) -> State:
        key = (method, corpus.key)
        with self._lock:
            if key not in self._text_cache:
                head, _ = self.head(method)
                parts = [text_states(head, self.backbone.encode_text(corpus.captions[i:i + TEXT_BATCH]).to(self.device))
                         for i in range(0, len(corpus), TEXT_BATCH)]
                if len(self._text_cache) > 16:
                    self._text_cache.clear()
                self._text_cache[key] = concat_states(parts)
            return self._text_cache[key]

    @torch.no_grad()
    def _clip_state(self, video: str, method: str) -> tuple[State, str, list[Image.Image]]:
        """States of a collection clip (by id) or of a video file (decoded and encoded now)."""
        head, _ = self.head(method)
        index = self.index
        if video in index:
            row = index.row_of(video)
            return self._loaded(method).searcher.candidate_states([row]), video, self.frames(index, row)
        path = Path(video)
        if not path.is_file():
            raise VtrError(f"{video}: no such clip in the collection and no such file")
        self.check_upload(path)
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
        captions = load_corpus(corpus, Path(str(corpus)).name) if corpus else self.collection_corpus()
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
        """Why a clip scored what it did for a query: the head's own `explain`, plus frames."""
        query = clean_query(query)
        index = self.index
        row = self._row(index, video_id)
        head, _ = self.head(method)
        text = self.backbone.encode_text([query]).to(self.device)
        video = self._loaded(method).searcher.candidate_states([row])
        explanation = head.explain(head.text_state(text), video, text)
        grid = tuple(index.header.patch_grid) if index.header.store_patches and index.header.patch_grid else None
        patches, source = explanation.patch_weights, "head" if explanation.patch_weights else ""
        if patches is None and grid:
            # the head scores no patches: show where the backbone's patch tokens match the query
            tokens = F.normalize(torch.from_numpy(index.patch_tokens([row])[0]).float(), dim=-1)
            similarity = tokens @ F.normalize(text.sentence[0].float().cpu(), dim=-1)
            patches = torch.softmax(similarity / BACKBONE_PATCH_TEMPERATURE, -1).tolist()
            source = "backbone"
        return ExplainView(query, video_id, explanation, self.frames(index, row), index.videos[row].frame_times_s,
                           grid, patches, source)

    @torch.no_grad()
    def dsl_matrix(self, method: str = "meanp", queries: list[str] | None = None, count: int = 8,
                   temperature: float = 1.0) -> DslView:
        """Scores of a query set before and after the dual-softmax reviser, with rank changes.

        No queries: the first caption of `count` collection clips against those clips (the true
        pairs on the diagonal). Typed queries: against the union of their top-3 clips.
        """
        index = self.index
        head, _ = self.head(method)
        if queries:
            queries = [clean_query(q) for q in queries if q.strip()]
        if queries:
            if not 2 <= len(queries) <= MAX_DSL_QUERIES:
                raise QueryError(f"DSL revises a whole query set: give 2 to {MAX_DSL_QUERIES} queries, one per line")
            rows: list[int] = []
            for result in self._loaded(method).searcher.search(queries, top_k=3):
                rows += [index.row_of(h.video_id) for h in result if index.row_of(h.video_id) not in rows]
            rows, truth = rows[: 2 * MAX_DSL_QUERIES], None
        else:
            corpus = self.collection_corpus()
            pairs = [(v.video_id, corpus.captions_of(v.video_id)) for v in index.videos]
            pairs = [(vid, caps[0]) for vid, caps in pairs if caps][: max(2, min(count, MAX_DSL_QUERIES))]
            if len(pairs) < 2:
                raise VtrError("the collection's captions name fewer than two indexed clips: type queries instead")
            queries = [caption for _, caption in pairs]
            rows, truth = [index.row_of(vid) for vid, _ in pairs], list(range(len(pairs)))
        query_states = text_states(head, self.backbone.encode_text(queries).to(self.device))
        video = self._loaded(method).searcher.candidate_states(rows)
        before = all_pair_scores(head, query_states, video)
        after = dsl_revise(float(head.scale) * before, temperature)
        before, after = before.float().cpu().numpy(), after.float().cpu().numpy()
        ids = [index.videos[r].video_id for r in rows]
        changes = []
        for q, query in enumerate(queries):
            clip = truth[q] if truth else int(before[q].argmax())
            changes.append(RankChange(query, ids[clip], rank_of(before[q], clip), rank_of(after[q], clip),
                                      ids[int(before[q].argmax())], ids[int(after[q].argmax())]))
        return DslView(method, queries, ids, before, after, truth, temperature, changes)

    # -- the collection ------------------------------------------------------------------------
    def _existing_copy(self) -> Path | None:
        """A user copy of a read-only index made by an earlier session, if it is still current."""
        copy = self.user_dir / "index"
        if not self.read_only or not VideoIndex.exists(copy):
            return None
        try:
            marker = json.loads((self.user_dir / "source.json").read_text())
        except (OSError, ValueError):
            return None
        if marker.get("manifest_sha256") != file_sha256(self.source_dir / MANIFEST):
            return None  # the bundled index was rebuilt since: start again from it
        return copy

    def _writable_index(self) -> Path:
        """Where writes go: the index itself, or (read-only source) a copy made on first write."""
        if not self.read_only or self._index_dir != self.source_dir:
            return self._index_dir
        copy = self.user_dir / "index"
        tmp = self.user_dir / f".index-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.source_dir, tmp, ignore=shutil.ignore_patterns(".lock"))
        manifest = json.loads((self.source_dir / MANIFEST).read_text())
        for video in manifest["videos"]:  # paths are relative to the index directory
            video["path"] = os.path.relpath(os.path.normpath(self.source_dir / video["path"]), copy)
        atomic_write_json(tmp / MANIFEST, manifest)
        os.rename(tmp, copy)
        atomic_write_json(self.user_dir / "source.json", {"source": str(self.source_dir),
                                                          "manifest_sha256": file_sha256(self.source_dir / MANIFEST)})
        self._index_dir = copy
        self.reload()
        return copy

    def _run_indexer(self, target: str | os.PathLike, progress: ProgressFn | None,
                     confine_to: Sequence[str] | None = None) -> indexer.IndexReport:
        with self._write_lock:
            directory = self._writable_index()
            header = self._index.header
            report = indexer.index_folder(target, directory, self.backbone, num_frames=header.num_frames,
                                          store_patches=header.store_patches, faiss_factory=header.faiss_factory,
                                          # threads: spawned processes would each re-import the app (gradio)
                                          decode_processes=False, confine_to=confine_to, progress=progress)
            self.reload()
            return report

    def index_folder(self, folder: str | os.PathLike, progress: ProgressFn | None = None) -> indexer.IndexReport:
        """Add every new or changed video under a folder (on this machine) to the collection."""
        folder = self.allowed_folder(folder)
        if not indexer.scan_videos(folder):
            raise VtrError(f"{folder}: no video files in it")
        return self._run_indexer(folder, progress, confine_to=self.video_roots)

    def allowed_folder(self, folder: str | os.PathLike) -> Path:
        """The folder, resolved (symlinks and `..` followed), if it lies under an allowed root.

        A browser must not make the server read, index or later serve files the operator did not
        offer: folders are confined to `video_roots` (the video roots given, plus the folders that
        already hold the collection's clips).
        """
        if not str(folder or "").strip():
            raise VtrError("no folder given: type the path of a folder of videos on the server")
        asked = Path(str(folder).strip()).expanduser()
        resolved = asked.resolve()
        if not any(resolved.is_relative_to(root) for root in self.video_roots):
            raise VtrError(f"{asked}: outside the folders this app may index ({', '.join(self.video_roots)}); "
                           "allow another video root to index it", setting="video_root")
        if not resolved.is_dir():
            raise VtrError(f"{asked}: no such folder on the server")
        return resolved

    def check_upload(self, path: str | os.PathLike, name: str | None = None) -> Path:
        """An uploaded clip within the size limit and with a video extension, or a one-line error."""
        path, name = Path(path), name or Path(path).name
        if not is_video_path(name):
            raise VideoError(f"{name}: not a video file (use .mp4, .webm, .mov, .mkv, ...)")
        try:
            size = path.stat().st_size
        except OSError:
            raise VideoError(f"{name}: the upload is gone (no such file)") from None
        if size > self.max_upload_bytes:
            raise VideoError(f"{name}: {size / 2**20:.3g} MB is over the upload limit of "
                             f"{self.max_upload_bytes / 2**20:.3g} MB")
        return path

    def add_clip(self, path: str | os.PathLike, name: str | None = None,
                 progress: ProgressFn | None = None) -> tuple[str, indexer.IndexReport]:
        """Copy an uploaded clip into the collection's uploads folder and index it: its id."""
        path = self.check_upload(path, name)
        read_video(path, self.index.header.num_frames)  # a clear error before anything is copied
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        stem, suffix = _slug(Path(name or path.name).stem), Path(name or path.name).suffix.lower()
        digest = file_sha256(path)
        target = self.uploads_dir / f"{stem}{suffix}"
        number = 1
        while target.exists() and file_sha256(target) != digest:
            number += 1
            target = self.uploads_dir / f"{stem}-{number}{suffix}"
        if not target.exists():
            shutil.copyfile(path, target)
        report = self._run_indexer(target, progress)
        if report.failed:
            raise VideoError(report.failed[0][1])
        record = next(v for v in self._index.videos if self._index.video_path(self._index.row_of(v.video_id)) == str(target.resolve()))
        return record.video_id, report

    def collection_info(self) -> CollectionInfo:
        index = self.index
        info = index.describe()
        return CollectionInfo(
            index_dir=str(index.directory), source_dir=str(self.source_dir), uploads_dir=str(self.uploads_dir),
            read_only_source=self.read_only, videos=len(index), generation=index.generation,
            backbone=info["backbone"], backbone_id=info["backbone_id"], device=str(self.device),
            frames=info["frames"], embed_dim=info["embed_dim"], patches_per_frame=info["patches_per_frame"],
            disk_bytes=info["disk_bytes"], captions=str(self._captions_path or ""),
        )

    def video_ids(self) -> list[str]:
        return [v.video_id for v in self.index.videos]

    def media_roots(self) -> list[str]:
        """Folders holding the collection's clips (what a web front end must be allowed to serve)."""
        index = self.index
        folders = {str(Path(index.video_path(r)).parent) for r in range(len(index))}
        folders |= {str(self.uploads_dir)}
        return sorted(f for f in folders if not any(f != o and f.startswith(o + os.sep) for o in folders))


def results_table(path: str | os.PathLike | None = None) -> tuple[list[str], list[list]]:
    """The evaluation table (docs/results.json, written by `vtr_core report`): columns, rows."""
    path = path or results_json()
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise VtrError(f"{path}: no readable results ({exc.__class__.__name__})") from None
    columns = ["split", "method", "head", "DSL", "T2V R@1", "T2V R@5", "T2V R@10", "T2V MdR",
               "V2T R@1", "V2T R@5", "V2T R@10", "V2T MdR"]
    rows = []
    for split in ("test300", "1kA"):
        for record in data.get(split, []):
            for dsl, metrics in (("no", record["plain"]), ("yes", record["dsl"])):
                if not metrics:
                    continue
                head = "zero-shot" if record["head_source"] == "zero-shot" else "trained"
                t2v, v2t = metrics["t2v"], metrics["v2t"]
                rows.append([split, record["method"], head, dsl,
                             *(round(t2v[k], 1) for k in ("R@1", "R@5", "R@10", "MdR")),
                             *(round(v2t[k], 1) for k in ("R@1", "R@5", "R@10", "MdR"))])
    if not rows:
        raise VtrError(f"{path}: no result rows in it")
    return columns, rows
