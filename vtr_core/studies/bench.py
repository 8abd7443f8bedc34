"""Benchmarks: speed and memory as measured facts, each figure printed beside its target.

`python -m vtr_core bench SUITE [--device cpu|cuda] --json OUT` runs one suite; `bench report`
turns the JSON files under docs/bench/ into docs/PERFORMANCE.md. Every suite measures all its
figures in one run and reports ratios next to absolute times, since shared machines are noisy.

Suites:
- `query`: one text query against N videos (synthetic unit vectors of the backbone's real
  dimensions; N up to 1M): p50/p99 of text encoding, faiss coarse search (Flat, and HNSW with its
  recall@10 against Flat), on a GPU the exact torch search with its product and top-k timed
  alone beside the memory-bandwidth floor (measured in the same run), EERCF re-rank of the top k,
  EERCF's fine score over all N (the baseline its two-stage search is faster than), and a batch
  of queries at the largest N.
- `memory`: bytes per video of each stored representation of an index, and peak RSS.
- `indexing`: videos/s and frames/s for decode alone (and its scaling with threads), the decode
  workers alone, encode alone and the whole pipeline, per backbone (clip backbones with freshly
  initialised weights the benchmark saves), with where the main thread's time went and, on a
  GPU, its utilisation.
- `training`: steps/s of head training from cached features, per method.
"""

from __future__ import annotations

import json
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from vtr_core.backbones.base import TextFeatures
from vtr_core.errors import VtrError
from vtr_core.index import VideoIndex, build_faiss
from vtr_core.methods.eercf import EERCF, EERCFConfig
from vtr_core.retrieval.exact_search import TorchFlatIndex
from vtr_core.retrieval.ranking import rerank_candidates
from vtr_core.storage import atomic_write_bytes

FINE_CHUNK = 20_000  # videos scored per chunk when timing the fine score over all N
HNSW_EF_SEARCH = (64, 128, 256, 512, 1024)  # HNSW32 search breadths: the speed / recall trade-off
HNSW_RECALL_TARGET = 0.95


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds (numpy's linear interpolation)."""
    values = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(values, 50)), 4), "p99_ms": round(float(np.percentile(values, 99)), 4)}


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1, sync: Callable[[], None] | None = None) -> list[float]:
    """Wall times of `fn`; `sync` waits for queued GPU work so each time covers the whole call."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - started)
    return out


def device_sync(device: str) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.startswith("cuda") else None


def machine() -> dict:
    import os

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Share of the true top-k found in each row's top-k, averaged over rows."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]
    return float(np.mean(hits))


def unit_vectors(count: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(count, dim, generator=generator), dim=-1)


# ----------------------------------------------------------------------------------- query
@dataclass
class RealLikeVectors:
    """Synthetic video vectors drawn from a Gaussian with real videos' mean and covariance, and
    real caption vectors as queries.

    Uniform random vectors are an approximate index's hardest case; real features fill a narrow,
    anisotropic cone, and text queries sit apart from the videos (the modality gap). The fitted
    Gaussian keeps both but none of the clusters of a real collection: it is still harder than a
    real collection of the same size."""

    mean: np.ndarray  # [D]
    cholesky: np.ndarray  # [D, D] lower factor of the covariance
    queries: np.ndarray  # [Q, D] unit caption vectors
    source: str

    def videos(self, count: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((count, len(self.mean)), np.float32)
        for start in range(0, count, 100_000):  # bounded temporary memory at 1M
            stop = min(count, start + 100_000)
            out[start:stop] = self.mean + rng.standard_normal((stop - start, len(self.mean))) @ self.cholesky.T
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def real_like_vectors(video_vectors: np.ndarray, query_vectors: np.ndarray, source: str) -> RealLikeVectors:
    videos = np.asarray(video_vectors, np.float64)
    covariance = np.cov(videos, rowvar=False) + 1e-6 * np.eye(videos.shape[1])  # full rank when N < D
    queries = np.asarray(query_vectors, np.float32)
    return RealLikeVectors(videos.mean(0), np.linalg.cholesky(covariance),
                           queries / np.linalg.norm(queries, axis=1, keepdims=True), source)


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


def fine_all_seconds(head: EERCF, query: dict, frames_of: Callable[[int, int], torch.Tensor], count: int,
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
def batch_throughput(head: EERCF, coarse_search: Callable[[np.ndarray, int], tuple], dim: int, frames: int, queries: int,
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
        texts = iter([f"a person number {i} rides a red bicycle down a hill" for i in range(repeats + 3)])
        bench.text_encode = percentiles(timed(lambda: encode([next(texts)]), repeats, warmup=3))
    if on_gpu:
        bench.copy_bytes_per_s = round(copy_bandwidth(device))
    head = EERCF(dim, EERCFConfig(num_frames=frames, temporal_layers=1)).eval().to(device)
    query_text = F.normalize(torch.randn(1, dim, generator=generator), dim=-1)
    for count in sizes:
        log(f"query suite: N = {count:,}")
        if real_like is None:
            coarse = unit_vectors(count, dim, generator).numpy()
            probes = unit_vectors(100, dim, generator).numpy()
        else:
            coarse = real_like.videos(count, seed + count)
            picked = np.random.default_rng(seed).choice(len(real_like.queries), 100, replace=False)
            probes = np.ascontiguousarray(real_like.queries[picked])
        flat = build_faiss(coarse, "Flat")
        one, depth = probes[:1], min(count, max(top_ks))  # stage 1 returns the deepest re-rank's candidates
        flat_times = timed(lambda: flat.search(one, depth), repeats)
        gpu = None
        if on_gpu:
            gpu_index = TorchFlatIndex(coarse, device)
            gpu = gpu_coarse_search(gpu_index, one, depth, repeats, bench.copy_bytes_per_s)
        hnsw = None
        if hnsw_from is not None and count >= hnsw_from:
            started = time.perf_counter()
            index = build_faiss(coarse, "HNSW32")
            build = time.perf_counter() - started
            _, truth = flat.search(probes, 10)
            hnsw = {"build_s": round(build, 2), "by_efSearch": {}}
            for ef in HNSW_EF_SEARCH:
                index.hnsw.efSearch = ef
                _, found = index.search(probes, 10)
                hnsw["by_efSearch"][str(ef)] = {**percentiles(timed(lambda: index.search(one, depth), repeats)),
                                                "recall@10": round(recall_at(found, truth), 4)}

        # fine features are generated per chunk from a seeded stream: 1M videos x 12 x 384 never sit in memory
        def frames_of(start: int, stop: int) -> torch.Tensor:
            chunk = torch.Generator(device=device).manual_seed(seed + 1 + start)  # generated where scored
            return F.normalize(torch.randn(stop - start, frames, dim, generator=chunk, device=device), dim=-1)

        query = head.text_state(TextFeatures(query_text.to(device), torch.zeros(1, 1, dim, device=device),
                                             torch.zeros(1, 1, dtype=torch.bool, device=device)))
        candidates_of = {k: torch.arange(min(k, count)).unsqueeze(0) for k in top_ks}
        pool = head.video_state(frames_of(0, min(count, max(top_ks))), None)
        sync = device_sync(device)
        rerank = {f"k={k}": percentiles(timed(lambda k=k: rerank_candidates(head, query, pool, candidates_of[k]),
                                              repeats, sync=sync))
                  for k in top_ks}
        fine_all = fine_all_seconds(head, query, frames_of, count, sync)
        stage_one = gpu["p50_ms"] / 1e3 if gpu else float(np.median(flat_times))
        two_stage = stage_one + rerank[f"k={top_ks[len(top_ks) // 2]}"]["p50_ms"] / 1e3
        row = QueryRow(count, percentiles(flat_times), hnsw, rerank, round(fine_all * 1e3, 2), round(fine_all / two_stage, 1),
                       coarse_gpu=gpu)
        best = _best_hnsw(asdict(row))
        if best and best[1]["recall@10"] >= HNSW_RECALL_TARGET:  # a speed-up at poor recall is no speed-up
            stage_two = rerank[f"k={top_ks[len(top_ks) // 2]}"]["p50_ms"]
            row.speedup_two_stage_hnsw = round(fine_all * 1e3 / (best[1]["p50_ms"] + stage_two), 1)
        bench.rows.append(row)
        if count == max(sizes) and batch_queries:
            log(f"query suite: a batch of {batch_queries:,} queries at N = {count:,}")
            search = gpu_index.search if on_gpu else flat.search
            bench.batch = {"videos": count, "stage_one": "exact on the GPU" if on_gpu else "faiss Flat",
                           **batch_throughput(head, search, dim, frames, batch_queries, top_ks[len(top_ks) // 2],
                                              device, generator)}
    return bench


# ---------------------------------------------------------------------------------- memory
def index_memory(index_dir: str | Path) -> dict:
    """Bytes per video of each stored part of an index, from its files on disk."""
    index = VideoIndex.open(index_dir)
    root = Path(index_dir) / "segments"
    parts: dict[str, int] = {}
    rows = 0
    for segment in sorted({v.segment for v in index.videos}):
        folder = root / segment
        rows += len(np.load(folder / "coarse.npy", mmap_mode="r"))
        for file in folder.glob("*.npy"):
            parts[file.stem] = parts.get(file.stem, 0) + file.stat().st_size
        parts["strips"] = parts.get("strips", 0) + sum(f.stat().st_size for f in (folder / "strips").glob("*.jpg"))
    total = sum(p.stat().st_size for p in Path(index_dir).rglob("*") if p.is_file())
    return {"videos": len(index), "stored_rows": rows, "bytes_per_video": {k: round(v / max(1, rows)) for k, v in sorted(parts.items())},
            "index_bytes": total, "backbone": index.header.backbone_id, "frames": index.header.num_frames}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc), for memory at rest rather than at the peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return peak_rss_bytes()


def explorer_at_rest(index_dir: str | Path, device: str = "cpu") -> dict:
    """RSS of the explorer's service after every method has answered one query (what the app
    holds between requests: backbone, heads, video states, faiss indexes)."""
    from vtr_core.explorer.service import Explorer

    before = current_rss_bytes()
    explorer = Explorer(index_dir, device=device)
    for method in explorer.methods:
        explorer.text_to_video("a person rides a bicycle", method, top_k=5)
    return {"rss_bytes_before": before, "rss_bytes_at_rest": current_rss_bytes(), "methods": explorer.methods}


# ---------------------------------------------------------------------------------- output
def write_json(result: object, path: str | Path) -> None:
    atomic_write_bytes(path, (json.dumps(asdict(result) if hasattr(result, "__dataclass_fields__") else result,
                                        indent=1) + "\n").encode())


# -------------------------------------------------------------------------------- indexing
def random_clip_spec(arch: str, folder: str | Path) -> str:
    """A clip backbone spec with freshly initialised weights saved to `folder`: speed does not
    depend on the values, and no weights need downloading."""
    import open_clip

    path = Path(folder) / f"{arch}-random.pt"
    if not path.is_file():
        torch.manual_seed(0)
        torch.save({"state_dict": open_clip.create_model(arch).state_dict()}, path)
    return f"clip:{arch}/{path}"


class GpuUtilisation:
    """Samples the GPU's busy share (NVML, through torch) in a thread while a block runs; None
    where NVML is missing."""

    def __init__(self, device: str, every_s: float = 0.1):
        import threading

        self.device, self.every_s, self.samples = device, every_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no pynvml / NVML: report nothing rather than a guess
                return

    def __enter__(self) -> "GpuUtilisation":
        if self.device.startswith("cuda"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean_percent(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def indexing_suite(video_dir: str | Path, backbone_specs: list[str], device: str = "cpu", num_frames: int = 12,
                   max_videos: int = 24, copies: int = 1, workers: int | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Videos/s and frames/s for decode alone, encode alone and the whole pipeline, per backbone.

    `copies` > 1 indexes each video that many times under different names (symbolic links), so a
    fast GPU pipeline runs long enough to be timed; every copy is decoded and encoded again."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from vtr_core.backbones import create_backbone
    from vtr_core.indexing.indexer import index_folder, scan_videos
    from vtr_core.indexing.workers import decode_ahead, default_decode_workers
    from vtr_core.video.decode import read_video

    paths = scan_videos(Path(video_dir))[:max_videos]
    if not paths:
        raise VtrError(f"{video_dir}: no videos to benchmark")
    workers = workers or default_decode_workers()
    result = {"videos": len(paths) * copies, "distinct_videos": len(paths), "frames_per_video": num_frames,
              "device": device, "decode_workers": workers, "machine": machine(), "backbones": {}}
    started = time.perf_counter()
    decoded = [read_video(p, num_frames).frames for p in paths]
    decode_s = time.perf_counter() - started
    frames = np.concatenate(decoded * copies)
    result["decode"] = {"seconds": round(decode_s, 3), "videos_per_s": round(len(paths) / decode_s, 2),
                        "frames_per_s": round(len(paths) * num_frames / decode_s, 1), "threads": 1}
    with tempfile.TemporaryDirectory() as scratch:
        clip_dir = Path(scratch) / "videos"
        clip_dir.mkdir()
        for copy in range(copies):
            for p in paths:
                (clip_dir / f"{p.stem}-{copy}{p.suffix}").symlink_to(p.resolve())
        listed = scan_videos(clip_dir)
        # decoding alone on 1, 2, 4, ... threads: the ceiling of any pipeline fed by CPU decoding
        result["decode_scaling"] = {}
        for threads in sorted({1, *[2**i for i in range(1, 8) if 2**i <= workers], workers}):
            with ThreadPoolExecutor(threads) as pool:
                began = time.perf_counter()
                list(pool.map(lambda p: read_video(p, num_frames), listed))
                result["decode_scaling"][str(threads)] = round(len(listed) * num_frames / (time.perf_counter() - began), 1)
        # what the indexer's workers do per video (decode, hash, thumbnail strip), in threads and
        # in processes: the most the pipeline can be fed
        for mode, processes in (("threads", False), ("processes", True)):
            began = time.perf_counter()
            for _ in decode_ahead([(p, p.stem, num_frames) for p in listed], workers, processes):
                pass
            seconds = time.perf_counter() - began
            result[f"decode_workers_{mode}"] = {"seconds": round(seconds, 3), "videos_per_s": round(len(listed) / seconds, 2),
                                                "frames_per_s": round(len(listed) * num_frames / seconds, 1), "workers": workers}
        for spec_number, spec in enumerate(backbone_specs):
            log(f"indexing suite: {spec}")
            backbone = create_backbone(spec, device)
            batch = 512 if backbone.device.type == "cuda" else 48
            backbone.encode_frames(frames[:batch], patch_dtype=torch.float16)  # warm-up; float16 patches as the indexer asks
            sync = device_sync(str(backbone.device))
            if sync:
                sync()
            began = time.perf_counter()
            for start in range(0, len(frames), batch):
                backbone.encode_frames(frames[start : start + batch], patch_dtype=torch.float16)
            if sync:
                sync()
            encode_s = time.perf_counter() - began
            entry = {"id": backbone.id,
                     "encode": {"seconds": round(encode_s, 3), "frames_per_s": round(len(frames) / encode_s, 1),
                                "videos_per_s": round(len(listed) / encode_s, 2), "batch_frames": batch}}
            # on a GPU the pipeline runs twice: decode workers as processes (the default there) and as threads
            for processes in ((True, False) if sync else (False,)):
                with GpuUtilisation(str(backbone.device)) as utilisation:
                    report = index_folder(clip_dir, Path(scratch) / f"index-{spec_number}-{processes}", backbone,
                                          num_frames=num_frames, decode_workers=workers, decode_processes=processes)
                entry["pipeline" if processes or not sync else "pipeline_threads"] = {
                    "seconds": round(report.seconds, 3), "frames_per_s": round(report.frames_encoded / report.seconds, 1),
                    "videos_per_s": round(len(listed) / report.seconds, 2), "failed": len(report.failed),
                    "decode_processes": report.decode_processes,
                    # the main thread's time: waiting on decoders, encoding, storing
                    "wait_s": round(report.wait_s, 3), "encode_s": round(report.encode_s, 3), "store_s": round(report.store_s, 3),
                    # how much of the pipeline's wall time the encoder alone needs: 1.0 means decoding,
                    # writing and scheduling cost nothing extra (encode-bound)
                    "encode_share": round(encode_s / report.seconds, 3),
                    "gpu_utilisation_percent": utilisation.mean_percent,
                }
            result["backbones"][backbone.spec.split("/")[0] if spec.startswith("clip:") else spec] = entry
    result["peak_rss_bytes"] = peak_rss_bytes()  # this process: the decoded frames held for encode-alone included
    return result


# -------------------------------------------------------------------------------- training
def training_suite(backbone, methods: list[str], videos: int = 256, frames: int = 12, epochs: int = 2,
                   batch_size: int = 128, log: Callable[[str], None] = print) -> dict:
    """Steps/s of head training from cached (here synthetic) features, one method at a time."""
    import tempfile

    from vtr_core.methods import create_head
    from vtr_core.training.train import TrainConfig, TrainData, train_head

    generator = torch.Generator().manual_seed(0)
    words = ["man", "woman", "dog", "car", "ball", "kitchen", "road", "rides", "cooks", "throws", "runs", "red"]
    captions = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(6)) for i in range(videos)]
    text = backbone.encode_text(captions)
    dim, raw_dim = backbone.embed_dim, backbone.raw_dim
    data = TrainData(F.normalize(torch.randn(videos, frames, dim, generator=generator), dim=-1), None, text,
                     torch.arange(videos), raw=torch.randn(videos, frames, raw_dim, generator=generator) if raw_dim else None)
    result = {"videos": videos, "batch_size": batch_size, "epochs": epochs, "device": str(backbone.device),
              "machine": machine(), "methods": {}}
    for name in methods:
        log(f"training suite: {name}")
        head = create_head(name, backbone, num_frames=frames, corpus=captions, temporal_layers=1).to(backbone.device)
        with tempfile.TemporaryDirectory() as scratch:
            run = train_head(head, data, TrainConfig(epochs=epochs, batch_size=batch_size), scratch, backbone.id, frames,
                             log=lambda m: None)
        result["methods"][name] = {"steps": run.steps, "seconds": round(run.seconds, 2),
                                   "steps_per_s": round(run.steps / run.seconds, 2)}
    return result


# ---------------------------------------------------------------------------------- report
def _best_hnsw(row: dict) -> tuple[str, dict] | None:
    """The fastest HNSW setting that reaches recall@10 0.95, else the most accurate one."""
    settings = (row.get("coarse_hnsw") or {}).get("by_efSearch", {})
    if not settings:
        return None
    good = [(ef, s) for ef, s in settings.items() if s["recall@10"] >= HNSW_RECALL_TARGET]
    return min(good, key=lambda e: e[1]["p50_ms"]) if good else max(settings.items(), key=lambda e: e[1]["recall@10"])


def targets(results: dict[str, dict]) -> list[str]:
    """Each target of the performance issue beside the figure measured for it."""
    rows = [(r, res) for res in results.values() if "rows" in res for r in res["rows"]]
    lines = []
    cpu = [(r, res) for r, res in rows if res["device"] == "cpu"]
    if cpu:
        for row, res in cpu:  # HNSW per kind of vectors and size
            best = _best_hnsw(row)
            if best:
                met = best[1]["recall@10"] >= HNSW_RECALL_TARGET and best[1]["p50_ms"] < 2.0
                lines.append(f"- CPU coarse search, HNSW under 2 ms at recall@10 >= 0.95: at N = {row['videos']:,}, "
                             f"{best[1]['p50_ms']:.2f} ms at recall@10 {best[1]['recall@10']:.3f} (efSearch {best[0]}): "
                             f"{'met' if met else 'not met'} on {res.get('vectors', 'uniformly random unit vectors')}.")
        largest, _ = max(cpu, key=lambda e: e[0]["videos"])
        ks = list(largest["rerank"])
        middle = ks[len(ks) // 2]  # the k the speed-up was measured at (50 by default)
        lines.append(f"- Two-stage ({middle}) at least 20x faster than fine scoring of all N: {largest['speedup_two_stage']:.1f}x "
                     f"at N = {largest['videos']:,} with exact (Flat) stage 1 on the CPU, which then takes "
                     f"{largest['coarse_flat']['p50_ms']:.0f} of the {largest['coarse_flat']['p50_ms'] + largest['rerank'][middle]['p50_ms']:.0f} ms; "
                     f"{'met' if largest['speedup_two_stage'] >= 20 else 'not met'}.")
    gpu = [(r, res) for r, res in rows if res["device"].startswith("cuda") and r.get("coarse_gpu")]
    if gpu:
        largest, res = max(gpu, key=lambda e: e[0]["videos"])
        g = largest["coarse_gpu"]
        lines.append(f"- GPU coarse search at N = {largest['videos']:,}, one query, within 2x of the memory-bandwidth floor: "
                     f"{g['p50_ms']:.3f} ms p50 against a floor of {g['floor_ms']:.3f} ms ({largest['videos']:,} x {res['dim']} "
                     f"float16 read once at the {res['copy_bytes_per_s'] / 1e12:.2f} TB/s this run measured), "
                     f"{g['p50_over_floor']:.2f}x: {'met' if g['p50_over_floor'] <= 2 else 'not met'} "
                     f"({res['machine'].get('gpu')}; the product alone {g['product_p50_ms']:.3f} ms, the top-k {g['topk_p50_ms']:.3f} ms).")
        lines.append(f"- Two-stage (k=50) at least 20x faster than fine scoring of all N, on the GPU: {largest['speedup_two_stage']:.1f}x "
                     f"at N = {largest['videos']:,} ({largest['fine_all_ms']:.1f} ms for all N); "
                     f"{'met' if largest['speedup_two_stage'] >= 20 else 'not met'}.")
    for res in results.values():
        if "backbones" in res and res["device"].startswith("cuda"):
            for name, b in res["backbones"].items():
                if "ViT-B-32" in name:
                    p = b["pipeline"]
                    feed = max(res.get("decode_workers_threads", {}).get("frames_per_s", 0),
                               res.get("decode_workers_processes", {}).get("frames_per_s", 0))
                    scaling = res.get("decode_scaling") or {}
                    peak = max(scaling.items(), key=lambda e: e[1]) if scaling else None
                    lines.append(f"- GPU indexing with ViT-B/32 at 3,000 frames/s end to end, decoding included: "
                                 f"{p['frames_per_s']:,.0f} frames/s ({res['machine'].get('gpu')}, {res['machine'].get('cpus', '?')} "
                                 f"CPU cores, {res['decode_workers']} decode workers); "
                                 f"{'met' if p['frames_per_s'] >= 3000 else 'not met'}. Bound: CPU decoding, not the GPU. "
                                 f"The encoder alone runs at {b['encode']['frames_per_s']:,.0f} frames/s and the GPU is busy "
                                 f"{p['gpu_utilisation_percent']}% of the run; "
                                 + (f"decord alone peaks at {peak[1]:,.0f} frames/s ({peak[0]} threads); " if peak else "")
                                 + f"the decode workers (decode, hash, thumbnail strip) feed at most {feed:,.0f} frames/s, and the "
                                 f"pipeline reaches {p['frames_per_s'] / feed:.0%} of that.")
    if not gpu:
        lines.append("- GPU targets (coarse search near the memory-bandwidth floor at 1M, ViT-B/32 indexing at "
                     "3,000 frames/s): not measured yet; no GPU run is in docs/bench/.")
    return lines


def render_performance(results: dict[str, dict]) -> str:
    """docs/PERFORMANCE.md from the suites' JSON (name -> parsed JSON)."""
    lines = ["# Performance", "",
             "Generated by `python -m vtr_core bench report` from the JSON files in docs/bench/ (each written by "
             "`python -m vtr_core bench SUITE --json docs/bench/SUITE-DEVICE.json`). Times are p50 / p99 in "
             "milliseconds over repeated runs of one query; every figure of a table comes from one run.", ""]
    goal_lines = targets(results)
    if goal_lines:
        lines += ["## Targets", "", *goal_lines, ""]
    for name, result in sorted(results.items()):
        if "rows" in result:
            m = result["machine"]
            lines += [f"## Query latency ({name}: {result['device']}, {m.get('gpu') or m['processor']}, "
                      f"{m['torch_threads']} threads)", "",
                      f"One text query; N synthetic video vectors of {result['dim']} dimensions "
                      f"({result.get('vectors', 'uniformly random unit vectors')}); EERCF (1-layer temporal "
                      f"encoder) with {result['frames']} frames per video for re-ranking and for the all-N baseline."]
            if result.get("text_encode"):
                lines.append(f"Text encoding ({result.get('text_backbone') or 'lite'}): {result['text_encode']['p50_ms']:.1f} / "
                             f"{result['text_encode']['p99_ms']:.1f} ms.")
            if result.get("copy_bytes_per_s"):
                lines += ["", f"Stage 1 on the GPU: an exact float16 product and top-k in torch (vtr_core.retrieval.exact_search). "
                          f"Memory bandwidth measured in this run (device-to-device copy, read + write): "
                          f"{result['copy_bytes_per_s'] / 1e12:.2f} TB/s; the floor is reading N x {result['dim']} float16 once.", "",
                          "| N | exact GPU search p50 / p99 | product alone | top-k alone | floor | p50 / floor | "
                          "re-rank k=10 | k=50 | k=100 | fine score of all N | two-stage speed-up |",
                          "|---:|---|---:|---:|---:|---:|---|---|---|---:|---:|"]
                for row in result["rows"]:
                    g = row["coarse_gpu"]
                    rerank = [f"{row['rerank'][k]['p50_ms']:.2f} / {row['rerank'][k]['p99_ms']:.2f}" for k in row["rerank"]]
                    lines.append(f"| {row['videos']:,} | {g['p50_ms']:.3f} / {g['p99_ms']:.3f} | {g['product_p50_ms']:.3f} | "
                                 f"{g['topk_p50_ms']:.3f} | {g['floor_ms']:.4f} | {g['p50_over_floor']:.2f}x | "
                                 + " | ".join(rerank) + f" | {row['fine_all_ms']:.1f} | {row['speedup_two_stage']:.1f}x |")
            else:
                lines += ["", "| N | faiss Flat | HNSW32 (efSearch, recall@10) | re-rank k=10 | k=50 | k=100 | "
                          "fine score of all N | two-stage speed-up, Flat / HNSW stage 1 (target 20x at 1M; EERCF claims ~50x) |",
                          "|---:|---|---|---|---|---|---:|---:|"]
            for row in ([] if result.get("copy_bytes_per_s") else result["rows"]):
                flat = row["coarse_flat"]
                best = _best_hnsw(row)
                hnsw = (f"{best[1]['p50_ms']:.2f} / {best[1]['p99_ms']:.2f} ({best[0]}, {best[1]['recall@10']:.3f})"
                        if best else "-")
                rerank = [f"{row['rerank'][k]['p50_ms']:.2f} / {row['rerank'][k]['p99_ms']:.2f}" for k in row["rerank"]]
                lines.append(f"| {row['videos']:,} | {flat['p50_ms']:.2f} / {flat['p99_ms']:.2f} | {hnsw} | "
                             + " | ".join(rerank) + f" | {row['fine_all_ms']:.1f} | {row['speedup_two_stage']:.1f}x / "
                             + (f"{row['speedup_two_stage_hnsw']:.1f}x |" if row.get("speedup_two_stage_hnsw") and best
                                and best[1]["recall@10"] >= HNSW_RECALL_TARGET else "- |"))
            if result.get("batch"):
                b = result["batch"]
                lines += ["", f"A batch of {b['queries']:,} queries at N = {b['videos']:,} ({b.get('stage_one', 'faiss Flat')}): coarse search "
                          f"{b['coarse_queries_per_s']:,.0f} queries/s; with the fine score of each query's top "
                          f"{b['top_k']}, {b['two_stage_queries_per_s']:,.0f} queries/s."]
            if result.get("copy_bytes_per_s"):
                lines += ["", "Below 1M videos the GPU search is bound by launches and the host round trip (about "
                          "0.4 ms), not by memory bandwidth; at 1M the product alone runs near the floor. The re-rank "
                          "times do not grow with N: stage 2 scores k videos whatever the collection size.", ""]
            else:
                hardness = ("uniformly random unit vectors are HNSW's hardest case, real features cluster"
                            if "uniform" in result.get("vectors", "uniform") else
                            "the fitted Gaussian keeps real vectors' narrow cone and the gap between text and video, "
                            "but none of a real collection's clusters: it is harder than a real collection of that size")
                lines += ["", "Target for CPU coarse search: HNSW under 2 ms at recall@10 >= 0.95 (the HNSW column shows "
                          f"the fastest efSearch reaching 0.95, else the most accurate one tried; {hardness}). The re-rank "
                          "times do not grow with N: stage 2 scores k videos whatever the collection size.", ""]
        elif "backbones" in result:
            d = result["decode"]
            lines += [f"## Indexing throughput ({name}: {result['device']}, {result['machine'].get('gpu') or result['machine']['processor']})", "",
                      f"{result['videos']} videos ({result.get('distinct_videos', result['videos'])} distinct MSR-VTT videos"
                      + (f", each indexed {result['videos'] // result['distinct_videos']} times under other names" if result.get("distinct_videos", result["videos"]) != result["videos"] else "")
                      + f"), {result['frames_per_video']} frames each. Decode alone (decord, one thread): "
                      f"{d['videos_per_s']:.1f} videos/s, {d['frames_per_s']:.0f} frames/s."]
            if result.get("decode_scaling"):
                lines.append("Decoding alone by threads: " + ", ".join(f"{t}: {fps:,.0f}" for t, fps in result["decode_scaling"].items())
                             + " frames/s.")
            for mode in ("threads", "processes"):
                job = result.get(f"decode_workers_{mode}")
                if job:
                    lines.append(f"The indexer's decode workers alone (decode, hash, thumbnail strip) in {job['workers']} {mode}: "
                                 f"{job['frames_per_s']:,.0f} frames/s.")
            lines += ["", "| backbone | encode alone (frames/s) | whole pipeline (frames/s, videos/s) | encode share | "
                      "main thread: waiting / encoding / storing (s) | GPU busy | decode workers |",
                      "|---|---:|---:|---:|---|---:|---|"]
            for spec, b in result["backbones"].items():
                for key in ("pipeline", "pipeline_threads"):
                    p = b.get(key)
                    if not p:
                        continue
                    share = p.get("encode_share", b.get("encode_share"))
                    stages = f"{p['wait_s']:.1f} / {p['encode_s']:.1f} / {p['store_s']:.1f}" if "wait_s" in p else "-"
                    busy = f"{p['gpu_utilisation_percent']:.0f}%" if p.get("gpu_utilisation_percent") is not None else "-"
                    workers = ("processes" if p.get("decode_processes") else "threads") if "decode_processes" in p else "threads"
                    lines.append(f"| {spec} | {b['encode']['frames_per_s']:,.1f} | {p['frames_per_s']:,.1f}, {p['videos_per_s']:.2f} | "
                                 f"{share:.2f} | {stages} | {busy} | {workers} |")
            if result.get("peak_rss_bytes"):
                lines += ["", f"Peak RSS of the indexing process: {result['peak_rss_bytes'] / 2**20:,.0f} MiB (it also holds "
                          f"every decoded frame at once for the encode-alone figure)."]
            lines += ["", "The encode share is the encoder's time alone over the pipeline's wall time: near 1 the "
                      "pipeline is encode-bound (the CPU case); far below 1 something else bounds it. The main thread "
                      "feeds the encoder and stores the features while worker threads or processes decode ahead.", ""]
        elif "methods" in result:
            lines += [f"## Training throughput ({name}: {result['device']}, {result['machine'].get('gpu') or result['machine']['processor']})", "",
                      f"Head training from cached features: {result['videos']} videos, batch {result['batch_size']}, "
                      f"{result['epochs']} epochs, 1-layer temporal encoders.", "",
                      "| method | steps/s |", "|---|---:|",
                      *[f"| {m} | {v['steps_per_s']:.2f} |" for m, v in result["methods"].items()], ""]
        elif "bytes_per_video" in result:
            parts = ", ".join(f"{k} {v:,} B" for k, v in result["bytes_per_video"].items())
            lines += [f"## Storage ({name})", "",
                      f"{result['videos']} videos, {result['frames']} frames each, backbone `{result['backbone']}`: "
                      f"{parts} per video; {result['index_bytes']:,} bytes on disk in all."]
            if "explorer" in result:
                e = result["explorer"]
                lines.append(f"The explorer's service at rest after one query per method ({', '.join(e['methods'])}): "
                             f"{e['rss_bytes_at_rest'] / 2**20:.0f} MiB resident (the Python process with torch "
                             f"loaded: {e['rss_bytes_before'] / 2**20:.0f} MiB).")
            lines += [f"Peak RSS of the measuring process: {result.get('peak_rss_bytes', 0) / 2**20:.0f} MiB.", ""]
    return "\n".join(lines)


def two_stage_accuracy(results_json: str | Path) -> str:
    """The accuracy side of the two-stage trade-off, from `report`'s docs/results.json."""
    path = Path(results_json)
    if not path.is_file():
        return ""
    study = json.loads(path.read_text()).get("two_stage")
    if not study:
        return ""
    rows = {str(r["k"]): r["R@1"] for r in study["rows"]}
    if "all pairs" not in rows or "50" not in rows:
        return ""
    return (f"Accuracy of the two-stage search (eercf, test300, {study['queries']} queries; docs/RESULTS.md): "
            f"R@1 {rows['50']:.1f} at k = 50 against {rows['all pairs']:.1f} with fine scoring of all pairs, "
            f"a difference of {rows['50'] - rows['all pairs']:+.1f} points (target: within 0.5).")


def write_performance(bench_dir: str | Path, output: str | Path, results_json: str | Path | None = None) -> None:
    results = {p.stem: json.loads(p.read_text()) for p in sorted(Path(bench_dir).glob("*.json"))}
    text = render_performance(results)
    accuracy = two_stage_accuracy(results_json) if results_json else ""
    atomic_write_bytes(output, (text + ("\n" + accuracy + "\n" if accuracy else "")).encode())
