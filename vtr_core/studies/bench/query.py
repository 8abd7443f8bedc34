"""The query suite: one text query against N videos (synthetic unit vectors of the backbone's
real dimensions; N up to 1M), with stage 1 and stage 2 of the two-stage search timed apart.

Measured: p50/p99 of text encoding, faiss coarse search (Flat, and HNSW with its recall@10
against Flat), on a GPU the exact torch search with its product and top-k timed alone beside the
memory-bandwidth floor (measured in the same run), EERCF re-rank of the top k, EERCF's fine score
over all N (the baseline its two-stage search is faster than), and a batch of queries at the
largest N.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from vtr_core.backbones.base import TextFeatures
from vtr_core.index import build_faiss
from vtr_core.methods import RetrievalHead, make_config, method_class
from vtr_core.retrieval.exact_search import TorchFlatIndex
from vtr_core.retrieval.ranking import rerank_candidates
from vtr_core.studies.bench.common import (
    HNSW_EF_SEARCH,
    HNSW_RECALL_TARGET,
    best_hnsw,
    device_sync,
    machine,
    percentiles,
    recall_at,
    timed,
)
from vtr_core.studies.bench.vectors import RealLikeVectors, collection, unit_vectors

FINE_CHUNK = 20_000  # videos scored per chunk when timing the fine score over all N

BENCH_METHOD = "eercf"  # the paper whose two-stage claim this suite measures (about 50x at 1M)


@dataclass
class QueryRow:
    videos: int
    coarse_flat: dict  # faiss Flat on the CPU
    coarse_hnsw: dict | None
    rerank: dict[str, dict]  # "k=50" -> percentiles
    fine_all_ms: float  # EERCF's fine score of one query against all N videos
    # fine_all / (stage 1 p50 + re-rank p50 at the middle k, 50 by default); stage 1 is faiss
    # Flat on the CPU and the exact torch search (coarse_gpu) on a GPU
    speedup_two_stage: float
    speedup_two_stage_hnsw: float | None = None  # the same with HNSW as stage 1 (its best setting)
    coarse_gpu: dict | None = None  # exact float16 product + top-k on the GPU, with its parts and floor


@dataclass
class QueryBench:
    device: str
    dim: int
    frames: int
    text_encode: dict = field(default_factory=dict)
    text_backbone: str = ""
    vectors: str = "uniformly random unit vectors"  # what the coarse vectors and probe queries are
    copy_bytes_per_s: float | None = None  # GPU memory bandwidth measured in this run (read + write)
    rows: list[QueryRow] = field(default_factory=list)
    batch: dict = field(default_factory=dict)  # a batch of queries at the largest N
    machine: dict = field(default_factory=machine)


@dataclass
class StageOne:
    """Stage 1 on one collection, timed: faiss Flat, on a GPU the exact torch search, and HNSW
    where the collection is large enough."""

    flat: object  # the faiss Flat index
    flat_times: list[float]
    gpu_index: TorchFlatIndex | None = None
    gpu: dict | None = None  # gpu_coarse_search's figures
    hnsw: dict | None = None  # build time and figures by efSearch

    def p50_s(self) -> float:
        """The stage 1 the two-stage speed-up counts: the exact GPU search where there is one."""
        return self.gpu["p50_ms"] / 1e3 if self.gpu else float(np.median(self.flat_times))

    @property
    def exact_search(self) -> Callable[[np.ndarray, int], tuple]:
        return self.gpu_index.search if self.gpu_index is not None else self.flat.search


def fine_all_seconds(head: RetrievalHead, query: dict, frames_of: Callable[[int, int], torch.Tensor], count: int,
                     sync: Callable[[], None] | None = None) -> float:
    """Time of EERCF's full fine score for one query against `count` videos, in chunks.

    Video states are computed outside the timer: an index computes them once, so the baseline is
    the scoring alone, as in the two-stage path."""
    total = 0.0
    for start in range(0, count, FINE_CHUNK):
        videos = head.video_state(frames_of(start, min(count, start + FINE_CHUNK)), None)
        if sync:
            sync()
        began = time.perf_counter()
        head.similarity(query, videos)
        if sync:
            sync()
        total += time.perf_counter() - began
    return total


def copy_bandwidth(device: str, megabytes: int = 2048, repeats: int = 20) -> float:
    """Device memory bandwidth in bytes/s from a large device-to-device copy (bytes read plus
    bytes written over the median time): the ceiling a memory-bound stage 1 is compared with."""
    source = torch.empty(megabytes * 2**20 // 2, dtype=torch.float16, device=device).uniform_(-1, 1)
    target = torch.empty_like(source)
    seconds = float(np.median(timed(lambda: target.copy_(source), repeats, warmup=3, sync=device_sync(device))))
    return 2 * source.numel() * source.element_size() / seconds


def gpu_coarse_search(index: TorchFlatIndex, query: np.ndarray, depth: int, repeats: int, copy_bytes_per_s: float) -> dict:
    """One query's exact stage 1 on the GPU (query up, product, top-k, k rows re-scored, results
    down), the product and the top-k timed alone, and the floor: reading N x D float16 once."""
    sync = device_sync(str(index.device))
    whole = percentiles(timed(lambda: index.search(query, depth), repeats, warmup=3))
    on_device = torch.from_numpy(query).to(index.device, index.dtype)
    product = percentiles(timed(lambda: on_device @ index.vectors.T, repeats, warmup=3, sync=sync))
    scores = on_device @ index.vectors.T
    top_k = percentiles(timed(lambda: scores.topk(depth, dim=1, sorted=False), repeats, warmup=3, sync=sync))
    floor_ms = index.vectors.numel() * index.vectors.element_size() / copy_bytes_per_s * 1e3
    return {**whole, "product_p50_ms": product["p50_ms"], "topk_p50_ms": top_k["p50_ms"],
            "floor_ms": round(floor_ms, 4), "p50_over_floor": round(whole["p50_ms"] / floor_ms, 2)}


@torch.no_grad()
def batch_throughput(head: RetrievalHead, coarse_search: Callable[[np.ndarray, int], tuple], dim: int, frames: int, queries: int,
                     top_k: int, device: str, generator: torch.Generator, pool_size: int = 5_000) -> dict:
    """Queries/s for a batch: coarse search of every query (faiss on the CPU, exact on a GPU),
    then the fine score of each query's top-k. Candidate states come from a pool of `pool_size`
    synthetic videos (row mod pool): the scoring work is the same as with distinct videos."""
    vectors = unit_vectors(queries, dim, generator)
    text = TextFeatures(vectors.to(device), torch.zeros(queries, 1, dim, device=device),
                        torch.zeros(queries, 1, dtype=torch.bool, device=device))
    pool = head.video_state(F.normalize(torch.randn(pool_size, frames, dim, generator=generator), dim=-1).to(device), None)
    sync = device_sync(device)
    if sync:  # warm the GPU kernels up on a few queries
        _, rows = coarse_search(vectors[:8].numpy(), top_k)
        rerank_candidates(head, head.text_state(TextFeatures(text.sentence[:8], text.word_tokens[:8], text.word_mask[:8])),
                          pool, torch.from_numpy(rows % pool_size))
        sync()
    started = time.perf_counter()
    _, rows = coarse_search(vectors.numpy(), top_k)
    coarse_s = time.perf_counter() - started
    states = head.text_state(text)
    rerank_candidates(head, states, pool, torch.from_numpy(rows % pool_size))
    if sync:
        sync()
    total_s = time.perf_counter() - started
    return {"queries": queries, "top_k": top_k, "coarse_s": round(coarse_s, 6), "two_stage_s": round(total_s, 6),
            "coarse_queries_per_s": round(queries / coarse_s, 1), "two_stage_queries_per_s": round(queries / total_s, 1)}


def text_encode_times(encode: Callable[[list[str]], object], repeats: int) -> dict[str, float]:
    """p50/p99 of encoding one query text, a different text each call."""
    texts = iter([f"a person number {i} rides a red bicycle down a hill" for i in range(repeats + 3)])
    return percentiles(timed(lambda: encode([next(texts)]), repeats, warmup=3))


def hnsw_settings(coarse: np.ndarray, flat, probes: np.ndarray, depth: int, repeats: int) -> dict:
    """HNSW32's build time, and per efSearch one query's p50/p99 and recall@10 against Flat."""
    started = time.perf_counter()
    index = build_faiss(coarse, "HNSW32")
    build = time.perf_counter() - started
    _, truth = flat.search(probes, 10)
    one = probes[:1]
    hnsw = {"build_s": round(build, 2), "by_efSearch": {}}
    for ef in HNSW_EF_SEARCH:
        index.hnsw.efSearch = ef
        _, found = index.search(probes, 10)
        hnsw["by_efSearch"][str(ef)] = {**percentiles(timed(lambda: index.search(one, depth), repeats)),
                                        "recall@10": round(recall_at(found, truth), 4)}
    return hnsw


def time_stage_one(coarse: np.ndarray, probes: np.ndarray, depth: int, repeats: int, hnsw_from: int | None,
                   device: str, copy_bytes_per_s: float | None) -> StageOne:
    """Stage 1 of one query (the first probe) returning `depth` candidates, every way it runs."""
    flat = build_faiss(coarse, "Flat")
    one = probes[:1]
    stage = StageOne(flat, timed(lambda: flat.search(one, depth), repeats))
    if device.startswith("cuda"):
        stage.gpu_index = TorchFlatIndex(coarse, device)
        stage.gpu = gpu_coarse_search(stage.gpu_index, one, depth, repeats, copy_bytes_per_s)
    if hnsw_from is not None and len(coarse) >= hnsw_from:
        stage.hnsw = hnsw_settings(coarse, flat, probes, depth, repeats)
    return stage


def fine_frames(seed: int, frames: int, dim: int, device: str) -> Callable[[int, int], torch.Tensor]:
    """Fine features of videos [start, stop) from a seeded stream, generated where they are scored:
    1M videos x 12 x 384 never sit in memory."""

    def frames_of(start: int, stop: int) -> torch.Tensor:
        chunk = torch.Generator(device=device).manual_seed(seed + 1 + start)
        return F.normalize(torch.randn(stop - start, frames, dim, generator=chunk, device=device), dim=-1)

    return frames_of


def time_stage_two(head: RetrievalHead, query_text: torch.Tensor, frames_of: Callable[[int, int], torch.Tensor], count: int,
                   top_ks: tuple[int, ...], repeats: int, device: str) -> tuple[dict[str, dict], float]:
    """Re-rank p50/p99 of the top k per k, and the seconds of the fine score over all `count` videos."""
    dim = query_text.shape[1]
    query = head.text_state(TextFeatures(query_text.to(device), torch.zeros(1, 1, dim, device=device),
                                         torch.zeros(1, 1, dtype=torch.bool, device=device)))
    candidates_of = {k: torch.arange(min(k, count)).unsqueeze(0) for k in top_ks}
    pool = head.video_state(frames_of(0, min(count, max(top_ks))), None)
    sync = device_sync(device)
    rerank = {f"k={k}": percentiles(timed(lambda k=k: rerank_candidates(head, query, pool, candidates_of[k]),
                                          repeats, sync=sync))
              for k in top_ks}
    return rerank, fine_all_seconds(head, query, frames_of, count, sync)


def query_row(count: int, stage_one: StageOne, rerank: dict[str, dict], fine_all: float, middle_k: int) -> QueryRow:
    """One N's figures, with the two-stage speed-ups measured at the middle k."""
    stage_two = rerank[f"k={middle_k}"]["p50_ms"]
    row = QueryRow(count, percentiles(stage_one.flat_times), stage_one.hnsw, rerank, round(fine_all * 1e3, 2),
                   round(fine_all / (stage_one.p50_s() + stage_two / 1e3), 1), coarse_gpu=stage_one.gpu)
    best = best_hnsw(asdict(row))
    if best and best[1]["recall@10"] >= HNSW_RECALL_TARGET:  # a speed-up at poor recall is no speed-up
        row.speedup_two_stage_hnsw = round(fine_all * 1e3 / (best[1]["p50_ms"] + stage_two), 1)
    return row


@torch.no_grad()
def query_suite(sizes: list[int], dim: int = 384, frames: int = 12, top_ks: tuple[int, ...] = (10, 50, 100),
                repeats: int = 50, hnsw_from: int | None = 10_000, encode: Callable[[list[str]], object] | None = None,
                device: str = "cpu", seed: int = 0, batch_queries: int = 1_000, real_like: RealLikeVectors | None = None,
                log: Callable[[str], None] = print) -> QueryBench:
    """One query at a time against N synthetic videos; see the module docstring. With
    `real_like`, coarse vectors and the probe queries (recall, the timed query) follow it."""
    generator = torch.Generator().manual_seed(seed)
    on_gpu = device.startswith("cuda")
    bench = QueryBench(device=device, dim=dim, frames=frames)
    if real_like is not None:
        bench.vectors = real_like.source
    if encode is not None:
        bench.text_encode = text_encode_times(encode, repeats)
    if on_gpu:
        bench.copy_bytes_per_s = round(copy_bandwidth(device))
    head = method_class(BENCH_METHOD)(dim, make_config(BENCH_METHOD, frames, temporal_layers=1)).eval().to(device)
    query_text = F.normalize(torch.randn(1, dim, generator=generator), dim=-1)
    frames_of = fine_frames(seed, frames, dim, device)
    middle_k = top_ks[len(top_ks) // 2]
    for count in sizes:
        log(f"query suite: N = {count:,}")
        coarse, probes = collection(count, dim, seed, generator, real_like)
        depth = min(count, max(top_ks))  # stage 1 returns the deepest re-rank's candidates
        stage_one = time_stage_one(coarse, probes, depth, repeats, hnsw_from, device, bench.copy_bytes_per_s)
        rerank, fine_all = time_stage_two(head, query_text, frames_of, count, top_ks, repeats, device)
        bench.rows.append(query_row(count, stage_one, rerank, fine_all, middle_k))
        if count == max(sizes) and batch_queries:
            log(f"query suite: a batch of {batch_queries:,} queries at N = {count:,}")
            bench.batch = {"videos": count, "stage_one": "exact on the GPU" if on_gpu else "faiss Flat",
                           **batch_throughput(head, stage_one.exact_search, dim, frames, batch_queries, middle_k,
                                              device, generator)}
    return bench
