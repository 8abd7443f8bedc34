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
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from vtr_core.backbones.base import TextFeatures
from vtr_core.errors import VtrError
from vtr_core.index import IndexHeader, VideoFeatures, VideoIndex, VideoRecord
from vtr_core.index.structures import choose_structure
from vtr_core.methods import RetrievalHead, make_config, method_class, select_rows
from vtr_core.retrieval.search import Searcher
from vtr_core.studies.bench.common import machine, percentiles, recall_at
from vtr_core.studies.bench.memory import current_rss_bytes
from vtr_core.studies.bench.vectors import RealLikeVectors

COMMIT_WINDOW = 20  # commits whose median is reported, at the start and at the end of a build
RERANK_METHOD = "eercf"  # the re-ranking head timed beside mean pooling
RERANK_DEPTH = 50  # eercf's default re-rank depth
CLUSTERS = 100  # centres of the clustered synthetic collection
EXACT_CHUNK = 4096  # rows of stored states scored at a time for the exact top-k


class SyntheticBackbone:
    """What a Searcher reads of a backbone (id, widths) for an index of synthetic vectors.

    It encodes nothing: the scale suite hands query vectors to the heads directly, so a text query
    that reaches `encode_text` is a mistake, reported as one."""

    raw_dim = 0
    patch_grid = None
    trains_end_to_end = False

    def __init__(self, dim: int):
        self.spec = self.id = f"synthetic-{dim}"
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
    build_s: float
    open_s: float  # VideoIndex.open + meanp Searcher (its states computed and stored) + the first query
    rss_mb: float  # the process's resident memory after opening (earlier sizes' leftovers included)
    query_p50_ms: float  # meanp: stage 1 of one query
    query_p99_ms: float
    rerank_open_s: float  # eercf's Searcher on the open index (its states computed and stored)
    rerank_p50_ms: float  # eercf: stage 1 + re-rank of its top RERANK_DEPTH from stored states
    rerank_p99_ms: float
    recall_at_10: float  # meanp's stage-1 structure against exact inner products over the same vectors
    structure: str  # the faiss factory the plan chooses for N (what the Searcher builds)
    disk_bytes: int  # the index as built (before any head store is written)
    index_dir: str = ""  # where it was kept, if it was


@dataclass
class ScaleBench:
    frames: int
    dim: int
    commit_every: int
    queries: int
    vectors: str = "clustered unit vectors; queries near random members"
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

    def query_vectors(self, index: VideoIndex, count: int) -> np.ndarray:
        """Captions of the fitted dataset, or vectors near random members of the collection."""
        rng = np.random.default_rng(self.seed + 1)
        if self.real_like is not None:
            picked = rng.choice(len(self.real_like.queries), min(count, len(self.real_like.queries)), replace=False)
            return np.ascontiguousarray(self.real_like.queries[picked], np.float32)
        members = index.coarse_vectors(rng.choice(len(index), min(count, len(index)), replace=False).tolist())
        return _unit(members + 0.5 / np.sqrt(self.dim) * rng.standard_normal(members.shape))


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
                             num_source_frames=300, width=320, height=240,
                             frame_times_s=[round(10.0 * (t + 0.5) / source.frames, 3) for t in range(source.frames)])
        yield VideoFeatures(record=record, coarse=coarse[i], frames=frames[i], patches=None)


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
            if len(times) % 200 == 0 and times:
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


def _coarse(states: dict[str, torch.Tensor], q: int) -> np.ndarray:
    return np.ascontiguousarray(states["coarse"][q : q + 1].float().cpu().numpy(), dtype=np.float32)


@torch.no_grad()
def rerank_times(searcher: Searcher, states: dict[str, torch.Tensor]) -> list[float]:
    """Seconds per query of stage 1 for RERANK_DEPTH candidates, then the head's score of them."""
    depth = min(RERANK_DEPTH, len(searcher.index))
    out = []
    for q in range(len(states["coarse"])):
        began = time.perf_counter()
        _, rows = searcher.coarse_index.search(_coarse(states, q), depth)
        candidates = rows[0][rows[0] >= 0].tolist()
        fine = searcher.head.similarity(select_rows(states, [q]), searcher.candidate_states(candidates))[0]
        torch.argsort(fine, descending=True)
        out.append(time.perf_counter() - began)
    return out


def exact_top(searcher: Searcher, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows of the exact top-k by inner product over the searcher's stored coarse states (numpy)."""
    scores = np.empty((len(queries), len(searcher.index)), np.float32)
    for start in range(0, len(searcher.index), EXACT_CHUNK):
        rows = list(range(start, min(len(searcher.index), start + EXACT_CHUNK)))
        coarse = searcher.candidate_states(rows)["coarse"].float().cpu().numpy()
        scores[:, start : start + len(rows)] = queries @ coarse.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def measure_queries(directory: Path, source: MomentSource, queries: int, seed: int) -> dict:
    """Opening (index, meanp Searcher, first query), then meanp and eercf latency and meanp's recall."""
    backbone = SyntheticBackbone(source.dim)
    began = time.perf_counter()
    index = VideoIndex.open(directory, backbone.id, backbone.embed_dim)
    searcher = Searcher(index, backbone, method_class("meanp")(source.dim))
    vectors = source.query_vectors(index, queries)
    states = query_states(searcher.head, vectors)
    searcher.coarse_index.search(_coarse(states, 0), 10)
    open_s = time.perf_counter() - began
    rss = current_rss_bytes()
    stage_one = []
    for q in range(len(vectors)):
        started = time.perf_counter()
        searcher.coarse_index.search(_coarse(states, q), 10)
        stage_one.append(time.perf_counter() - started)
    coarse = states["coarse"].float().cpu().numpy()
    _, found = searcher.coarse_index.search(np.ascontiguousarray(coarse, dtype=np.float32), 10)
    recall = recall_at(found, exact_top(searcher, coarse, 10))
    torch.manual_seed(seed)
    head = method_class(RERANK_METHOD)(source.dim, make_config(RERANK_METHOD, source.frames, temporal_layers=1)).eval()
    began = time.perf_counter()
    reranker = Searcher(index, backbone, head)
    rerank_open_s = time.perf_counter() - began
    rerank = percentiles(rerank_times(reranker, query_states(reranker.head, vectors)))
    meanp = percentiles(stage_one)
    return {"open_s": round(open_s, 3), "rss_mb": round(rss / 2**20, 1), "query_p50_ms": meanp["p50_ms"],
            "query_p99_ms": meanp["p99_ms"], "rerank_open_s": round(rerank_open_s, 3),
            "rerank_p50_ms": rerank["p50_ms"], "rerank_p99_ms": rerank["p99_ms"], "recall_at_10": round(recall, 4)}


def _median_ms(seconds: list[float]) -> float:
    return round(float(np.median(seconds)) * 1e3, 3)


def scale_row(directory: Path, size: int, source: MomentSource, commit_every: int, queries: int, seed: int,
              log: Callable[[str], None]) -> ScaleRow:
    """Build one index of `size` moments in `directory` and measure it."""
    commits, build_s = build_index(directory, size, source, commit_every, log)
    if not commits:
        raise VtrError(f"scale suite: {size} moments make no full commit of {commit_every}; use more moments")
    disk = VideoIndex.open(directory).describe()["disk_bytes"]
    figures = measure_queries(directory, source, queries, seed)
    first, last = _median_ms(commits[:COMMIT_WINDOW]), _median_ms(commits[-COMMIT_WINDOW:])
    return ScaleRow(size=size, commits=len(commits), commit_ms=last, commit_ms_first=first,
                    commit_ratio=round(last / first, 2), build_s=round(build_s, 2), **figures,
                    structure=choose_structure(size, source.dim).factory, disk_bytes=disk)


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
