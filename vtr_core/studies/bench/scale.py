"""The scale suite: real indexes of N synthetic moments built through the real writer, to see what
grows with N: the cost of one commit, opening the index, memory, query latency, recall, disk.

No video is decoded and no backbone runs: each moment is a record with a synthetic path and hash,
frame vectors [T, D] (clustered unit vectors, or drawn from a Gaussian fitted to MSR-VTT) and their
normalised mean as the coarse vector. Moments are committed every `commit_every`, as the indexer
does, and generated one commit at a time, so N x T x D never sits in memory. Queries are given as
vectors (text encoding is the query suite's business) and go through the heads' own text states.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from vtr_core.backbones.base import TextFeatures
from vtr_core.errors import VtrError
from vtr_core.index import IndexHeader, VideoFeatures, VideoIndex, VideoRecord
from vtr_core.index.segments import gather
from vtr_core.index.structures import choose_structure
from vtr_core.methods import RetrievalHead, make_config, method_class, select_rows
from vtr_core.retrieval.search import Searcher
from vtr_core.studies.bench.common import machine, percentiles, recall_at
from vtr_core.studies.bench.memory import current_rss_bytes
from vtr_core.studies.bench.vectors import RealLikeVectors

COMMIT_WINDOW = 20  # commits whose median is reported, at the start and at the end of a build
# The re-ranking head timed beside mean pooling: CAMoE re-ranks the deepest shortlist (200). EERCF's
# stored states (frames and temporal states, float32) would take 37 GB at 1M moments, more than this
# machine's free disk beside the index; CAMoE's take 21 GB.
RERANK_METHOD = "camoe"
CLUSTERS = 100  # centres of the clustered synthetic collection
EXACT_CHUNK = 65536  # rows of stored states scored at a time for the exact top-k


class SyntheticBackbone:
    """What a Searcher reads of a backbone (id, widths) for an index of synthetic vectors.

    It encodes nothing: the scale suite hands query vectors to the heads directly, so a text query
    that reaches `encode_text` is a mistake, reported as one."""

    raw_dim = 0
    patch_grid = None
    trains_end_to_end = False

    def __init__(self, dim: int):
        self.spec = self.id = self.frames_id = f"synthetic-{dim}"
        self.embed_dim = dim
        self.device = torch.device("cpu")

    def encode_frames(self, frames: np.ndarray, patch_dtype: torch.dtype = torch.float32):
        raise VtrError(f"backbone {self.id} holds synthetic vectors only: it cannot encode frames")

    def encode_text(self, texts: list[str]) -> TextFeatures:
        raise VtrError(f"backbone {self.id} holds synthetic vectors only: give query vectors, not texts")


@dataclass
class ScaleRow:
    size: int
    commits: int
    commit_ms: float  # median of the last COMMIT_WINDOW full commits: the index already holds about N moments
    commit_ms_first: float  # median of the first COMMIT_WINDOW full commits, measured in the same run
    commit_ratio: float  # commit_ms / commit_ms_first
    build_s: float  # every commit, and the background merges waited for at the end
    segments: int  # segments after the build (merging bounds them)
    prime_s: float  # meanp's first Searcher: its states and stage-1 structure computed and stored, once
    open_s: float  # a fresh process: VideoIndex.open + meanp Searcher + the first query
    rss_mb: float  # that process's resident memory after the timed meanp queries
    vector_mb: float  # the meanp store's coarse vectors (N x D float32), the base of the memory target
    query_p50_ms: float  # meanp: stage 1 and the hits looked up in the catalogue, one query (files warmed)
    query_p99_ms: float
    rerank_prime_s: float  # the re-ranking head's first Searcher (states + structure stored)
    rerank_open_s: float  # its Searcher opened again (in the same process, after meanp's)
    rerank_p50_ms: float  # stage 1 + re-rank of its default depth from stored states + lookup, one query
    rerank_p99_ms: float
    recall_at_10: float  # meanp's stage-1 structure against exact inner products over the same vectors
    structure: str  # the faiss factory the plan chooses for N
    disk_bytes: int  # the index as built, before any head store is written
    index_dir: str = ""  # where it was kept, if it was


@dataclass
class ScaleBench:
    frames: int
    dim: int
    commit_every: int
    queries: int
    vectors: str = "clustered unit vectors; queries near random members"
    rerank_method: str = RERANK_METHOD
    # one row per size; not named "rows": `bench report` reads that key as the query suite's
    by_size: list[ScaleRow] = field(default_factory=list)
    machine: dict = field(default_factory=machine)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class MomentSource:
    """Frame vectors [n, T, D] of moments [start, stop), the same for a given seed and start."""

    def __init__(self, dim: int, frames: int, seed: int, real_like: RealLikeVectors | None):
        self.dim, self.frames, self.seed, self.real_like = dim, frames, seed, real_like
        self.centres = _unit(np.random.default_rng(seed).standard_normal((CLUSTERS, dim)))

    def frame_vectors(self, start: int, stop: int) -> np.ndarray:
        count = stop - start
        if self.real_like is not None:  # every frame drawn from the fitted Gaussian
            return self.real_like.videos(count * self.frames, self.seed + start).reshape(count, self.frames, self.dim)
        rng = np.random.default_rng([self.seed, start])
        scale = 1 / np.sqrt(self.dim)
        moments = _unit(self.centres[rng.integers(CLUSTERS, size=count)]
                        + 0.6 * scale * rng.standard_normal((count, self.dim)))
        return _unit(moments[:, None] + 0.5 * scale * rng.standard_normal((count, self.frames, self.dim)))

    def query_vectors(self, size: int, count: int) -> np.ndarray:
        """Captions of the fitted dataset, or vectors near random members of the collection (made again
        from the seed: nothing is read from the index)."""
        rng = np.random.default_rng(self.seed + 1)
        if self.real_like is not None:
            picked = rng.choice(len(self.real_like.queries), min(count, len(self.real_like.queries)), replace=False)
            return np.ascontiguousarray(self.real_like.queries[picked], np.float32)
        members = [_unit(self.frame_vectors(int(n), int(n) + 1).mean(1))[0]
                   for n in rng.choice(size, min(count, size), replace=False)]
        return _unit(np.stack(members) + 0.5 / np.sqrt(self.dim) * rng.standard_normal((len(members), self.dim)))


def synthetic_header(dim: int, frames: int) -> IndexHeader:
    return IndexHeader(backbone_spec=f"synthetic-{dim}", backbone_id=f"synthetic-{dim}", embed_dim=dim,
                       num_frames=frames, patch_grid=None, store_patches=False, faiss_factory="auto", raw_dim=0)


def synthetic_moments(source: MomentSource, start: int, stop: int) -> Iterator[VideoFeatures]:
    """Records as the indexer writes them, with synthetic paths and hashes; no strip, patches or raw."""
    frames = source.frame_vectors(start, stop)
    coarse = _unit(frames.mean(1))
    for i in range(stop - start):
        n = start + i
        record = VideoRecord(video_id=f"m{n:08d}", path=f"synthetic/m{n:08d}.mp4", size=1_000_000 + n, mtime_ns=n,
                             sha256=hashlib.sha256(str(n).encode()).hexdigest(), duration_s=10.0, fps=30.0,
                             num_source_frames=300, width=320, height=240)
        times = [round(10.0 * (t + 0.5) / source.frames, 3) for t in range(source.frames)]
        yield VideoFeatures.whole(record, times, coarse=coarse[i], frames=frames[i])


def build_index(directory: Path, size: int, source: MomentSource, commit_every: int,
                log: Callable[[str], None]) -> tuple[list[float], float]:
    """Seconds of each commit of `commit_every` moments (a shorter last one left out), and the build's seconds."""
    started = time.perf_counter()
    times: list[float] = []
    with VideoIndex.writer(directory, synthetic_header(source.dim, source.frames)) as writer:
        for start in range(0, size, commit_every):
            stop = min(size, start + commit_every)
            for item in synthetic_moments(source, start, stop):
                writer.add(item)
            began = time.perf_counter()
            writer.commit()
            if stop - start == commit_every:
                times.append(time.perf_counter() - began)
            if len(times) % 1000 == 0 and times:
                log(f"scale suite: {stop:,} / {size:,} moments, last commit {times[-1] * 1e3:.1f} ms")
    return times, time.perf_counter() - started


def query_states(head: RetrievalHead, vectors: np.ndarray) -> dict[str, torch.Tensor]:
    """The head's text states for query vectors given as sentence features (one word token each)."""
    sentence = torch.from_numpy(vectors).to(head.device)
    count = len(vectors)
    text = TextFeatures(sentence, sentence.unsqueeze(1), torch.ones(count, 1, dtype=torch.bool, device=head.device),
                        tokens=[["q"]] * count, texts=["q"] * count)
    with torch.no_grad():
        return head.text_state(text)


def rerank_head(dim: int, frames: int, seed: int) -> RetrievalHead:
    """The re-ranking head timed beside mean pooling: the same weights (so the same store) in every process."""
    torch.manual_seed(seed)
    return method_class(RERANK_METHOD)(dim, make_config(RERANK_METHOD, frames, temporal_layers=1)).eval()


def _searcher(directory: Path, dim: int, head: RetrievalHead) -> Searcher:
    backbone = SyntheticBackbone(dim)
    return Searcher(VideoIndex.open(directory, backbone.id, backbone.embed_dim), backbone, head)


def query_times(searcher: Searcher, states: dict[str, torch.Tensor]) -> list[float]:
    """Seconds per query of `search_states` (stage 1, the head's re-rank if it has one, the lookup)."""
    out = []
    for q in range(len(states["coarse"])):
        one = select_rows(states, [q])
        began = time.perf_counter()
        searcher.search_states(one, top_k=10)
        out.append(time.perf_counter() - began)
    return out


def exact_top(searcher: Searcher, queries: np.ndarray, k: int) -> np.ndarray:
    """Moment ids of the exact top-k by inner product over the searcher's stored coarse states."""
    ids, segments, rows = searcher.index.catalogue.live_ids(searcher.index.generation)
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(ids), EXACT_CHUNK):
        stop = min(len(ids), start + EXACT_CHUNK)
        coarse = gather(list(zip(segments[start:stop], rows[start:stop].tolist())),
                        lambda s: searcher.segment_states(s)["coarse"])
        scores = np.concatenate([best_scores, queries @ coarse.T], axis=1)
        pool = np.concatenate([best_ids, np.broadcast_to(ids[start:stop], (len(queries), stop - start))], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, order, 1), np.take_along_axis(pool, order, 1)
    return best_ids


def prime(directory: str, dim: int, frames: int, seed: int) -> dict:
    """In a child process: each head's first Searcher, which computes and stores its states and structure."""
    began = time.perf_counter()
    _searcher(Path(directory), dim, method_class("meanp")(dim))
    primed = time.perf_counter()
    _searcher(Path(directory), dim, rerank_head(dim, frames, seed))
    return {"prime_s": round(primed - began, 3), "rerank_prime_s": round(time.perf_counter() - primed, 3)}


def probe(directory: str, dim: int, frames: int, seed: int, vectors: np.ndarray) -> dict:
    """In a fresh child process: open for search and query, as a user's first search after a restart."""
    began = time.perf_counter()
    searcher = _searcher(Path(directory), dim, method_class("meanp")(dim))
    states = query_states(searcher.head, vectors)
    searcher.search_states(select_rows(states, [0]), top_k=10)
    open_s = time.perf_counter() - began
    searcher.warm()  # latencies below are a running service's: its files read through once
    meanp = percentiles(query_times(searcher, states))
    rss = current_rss_bytes()
    coarse = np.ascontiguousarray(states["coarse"].float().cpu().numpy(), dtype=np.float32)
    _, found = searcher.stage_one.search(coarse, 10)
    recall = recall_at(found, exact_top(searcher, coarse, 10))
    began = time.perf_counter()
    reranker = _searcher(Path(directory), dim, rerank_head(dim, frames, seed))
    rerank_open_s = time.perf_counter() - began
    reranker.warm()
    rerank = percentiles(query_times(reranker, query_states(reranker.head, vectors)))
    return {"open_s": round(open_s, 3), "rss_mb": round(rss / 2**20, 1), "query_p50_ms": meanp["p50_ms"],
            "query_p99_ms": meanp["p99_ms"], "rerank_open_s": round(rerank_open_s, 3),
            "rerank_p50_ms": rerank["p50_ms"], "rerank_p99_ms": rerank["p99_ms"], "recall_at_10": round(recall, 4)}


def in_child(fn: Callable[..., dict], *args) -> dict:
    """`fn(*args)` in a fresh (spawned) process: its memory and timings owe nothing to this one's."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _median_ms(seconds: list[float]) -> float:
    return round(float(np.median(seconds)) * 1e3, 3)


def scale_row(directory: Path, size: int, source: MomentSource, commit_every: int, queries: int, seed: int,
              log: Callable[[str], None]) -> ScaleRow:
    """Build one index of `size` moments in `directory` and measure it."""
    commits, build_s = build_index(directory, size, source, commit_every, log)
    if not commits:
        raise VtrError(f"scale suite: {size} moments make no full commit of {commit_every}; use more moments")
    built = VideoIndex.open(directory).describe()
    log(f"scale suite: built {size:,} in {build_s:.1f} s ({built['segments']} segments); priming the heads")
    primed = in_child(prime, str(directory), source.dim, source.frames, seed)
    log(f"scale suite: primed in {primed['prime_s'] + primed['rerank_prime_s']:.1f} s; probing")
    figures = in_child(probe, str(directory), source.dim, source.frames, seed, source.query_vectors(size, queries))
    first, last = _median_ms(commits[:COMMIT_WINDOW]), _median_ms(commits[-COMMIT_WINDOW:])
    return ScaleRow(size=size, commits=len(commits), commit_ms=last, commit_ms_first=first,
                    commit_ratio=round(last / first, 2), build_s=round(build_s, 2), segments=built["segments"],
                    vector_mb=round(size * source.dim * 4 / 2**20, 1), **primed, **figures,
                    structure=choose_structure(size, source.dim).factory, disk_bytes=built["disk_bytes"])


def scale_suite(sizes: list[int], dim: int = 384, frames: int = 12, commit_every: int = 64, queries: int = 50,
                seed: int = 0, real_like: RealLikeVectors | None = None, keep_dir: str | Path | None = None,
                log: Callable[[str], None] = print) -> ScaleBench:
    """One freshly built index per size; see the module docstring. With `keep_dir` the indexes stay
    there (scale-N), else they are built in a temporary folder and removed."""
    if real_like is not None and real_like.mean.shape[0] != dim:
        raise VtrError(f"scale suite: the fitted vectors are {real_like.mean.shape[0]}-d, not {dim}-d")
    bench = ScaleBench(frames=frames, dim=dim, commit_every=commit_every, queries=queries)
    if real_like is not None:
        bench.vectors = real_like.source
    source = MomentSource(dim, frames, seed, real_like)
    root = Path(keep_dir) if keep_dir is not None else Path(tempfile.mkdtemp(prefix="vtr-scale-"))
    try:
        for size in sizes:
            log(f"scale suite: N = {size:,}")
            directory = root / f"scale-{size}"
            if directory.exists():
                raise VtrError(f"scale suite: {directory} exists already; give an empty folder")
            row = scale_row(directory, size, source, commit_every, queries, seed, log)
            if keep_dir is not None:
                row.index_dir = str(directory)
            else:
                shutil.rmtree(directory, ignore_errors=True)
            bench.by_size.append(row)
    finally:
        if keep_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return bench
