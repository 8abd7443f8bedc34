"""The long-video moment benchmark run: index once per moment policy, search every query, score.

Why: moment search is only useful if cutting long videos into moments loses little of what the
heads achieve on whole clips. For each policy (shots, windows) the benchmark's long videos are
indexed once (kept under the index root and reused by later runs: indexing is incremental), and
each method's head searches every clip's query over the whole corpus (top 5 ranges, adjacent hits
of one video merged, not one per video). The TVR metrics (vtr_core.studies.moments.metrics) are
set beside the same head's clip-level text-to-video R@1 on the same clips (the ceiling), computed
by the evaluation code the `eval` command uses, or read from docs/results.json; the ratio
R@1@0.5 / clip R@1 should reach GOAL_RATIO for every method.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from vtr_core.backbones import Backbone
from vtr_core.errors import VtrError
from vtr_core.methods import RetrievalHead, resolve_head
from vtr_core.studies.moments.build import VIDEOS, MomentBenchmark, load_benchmark
from vtr_core.studies.moments.metrics import Moment, corpus_moment_metrics

if TYPE_CHECKING:
    from vtr_core.index import VideoIndex
    from vtr_core.retrieval.search import Searcher
    from vtr_core.training.data import RetrievalDataset

DEFAULT_METHODS = ("meanp", "s3ma", "eercf", "camoe")
GOAL_RATIO = 0.8
TOP_K = 5
CEILINGS = ("compute", "results", "none")
Log = Callable[[str], None]


@dataclass
class MethodResult:
    """One method on one policy's index: the moment metrics and the clip-level ceiling beside them."""

    method: str
    head: str  # the checkpoint's path, or "zero-shot"
    metrics: dict
    clip_t2v_r1: float | None  # the same head's text-to-video R@1 on the same clips, whole
    ratio: float | None  # moment R@1@0.5 / clip R@1
    search_seconds: float
    hits: list[list[dict]] = field(default_factory=list, repr=False)  # per query, not in the JSON


@dataclass
class PolicyResult:
    """One moment policy: its index and every method's result on it."""

    policy: str  # as asked for
    spec: str  # as the index records it (defaults filled in)
    index: str
    videos: int
    moments: int
    mean_moment_s: float
    index_seconds: float
    methods: list[MethodResult] = field(default_factory=list)


@dataclass
class MomentsEval:
    """A whole run; `to_dict` is the JSON written to docs/bench/moments-*.json."""

    benchmark: dict
    backbone: str
    backbone_id: str
    num_frames: int
    top_k: int
    ceiling: str
    merge: bool = True  # adjacent or overlapping hits of a video merged into one range
    goal_ratio: float = GOAL_RATIO
    policies: list[PolicyResult] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        for policy in data["policies"]:
            for method in policy["methods"]:
                del method["hits"]
        return data


def policy_slug(policy: str) -> str:
    """A folder name for a policy's index: `shots:4/32` -> `shots-4-32`."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", policy).strip("-") or "default"


def index_policy(bench_dir: Path, policy: str, index_dir: Path, backbone: Backbone, num_frames: int,
                 progress: Callable | None = None) -> tuple[VideoIndex, float]:
    """The benchmark's videos indexed with one policy (only what is missing), and the seconds it took."""
    from vtr_core.index import VideoIndex
    from vtr_core.indexing import index_folder

    started = time.perf_counter()
    report = index_folder(bench_dir / VIDEOS, index_dir, backbone, num_frames=num_frames, moments=policy,
                          progress=progress)
    if report.failed:
        raise VtrError(f"{index_dir}: {len(report.failed)} benchmark videos failed to index: {report.failed[0][1]}")
    return VideoIndex.open(index_dir, backbone_id=backbone.id), time.perf_counter() - started


def hits_as_moments(hits: list, file_video: dict[str, str]) -> list[Moment]:
    """Search hits as predicted moments, named by the benchmark's video ids (matched by file name)."""
    return [Moment(file_video.get(Path(h.path).name, h.video_id), float(h.start_s), float(h.end_s)) for h in hits]


def search_benchmark(searcher: Searcher, benchmark: MomentBenchmark, top_k: int,
                     merge: bool = True) -> tuple[list[list[Moment]], list[list[dict]]]:
    """Every clip's query searched over the whole corpus: ranked predictions, and the hits as records."""
    file_video = {v.file: v.video_id for v in benchmark.videos}
    queries = [clip.query for _, clip in benchmark.clips]
    results = searcher.search(queries, top_k=top_k, per_video=False, merge=merge)
    predictions = [hits_as_moments(hits, file_video) for hits in results]
    records = [[{"video": p.video, "start_s": p.start_s, "end_s": p.end_s, "score": float(h.score)}
                for p, h in zip(moments, hits)] for moments, hits in zip(predictions, results)]
    return predictions, records


def truths_of(benchmark: MomentBenchmark) -> list[Moment]:
    """The ground-truth moment of each query, in benchmark order."""
    return [Moment(video.video_id, clip.start_s, clip.end_s) for video, clip in benchmark.clips]


def evaluate_method(index: VideoIndex, backbone: Backbone, head: RetrievalHead, source: str, benchmark: MomentBenchmark,
                    top_k: int, clip_r1: float | None, merge: bool = True) -> MethodResult:
    """One head's moment metrics over one policy's index, beside its clip-level ceiling."""
    from vtr_core.retrieval.search import Searcher

    started = time.perf_counter()
    predictions, records = search_benchmark(Searcher(index, backbone, head), benchmark, top_k, merge)
    metrics = corpus_moment_metrics(predictions, truths_of(benchmark))
    ratio = metrics["R@1@0.5"] / clip_r1 if clip_r1 else None
    return MethodResult(head.name, source, metrics, clip_r1, ratio, time.perf_counter() - started, records)


def clip_dataset(benchmark: MomentBenchmark) -> RetrievalDataset:
    """The benchmark's clips as a retrieval dataset (its own queries, in benchmark order)."""
    from vtr_core.training.data import RetrievalDataset, load_dataset

    dataset = load_dataset(benchmark.source, benchmark.split)
    position = {v: i for i, v in enumerate(dataset.video_ids)}
    missing = [clip.video_id for _, clip in benchmark.clips if clip.video_id not in position]
    if missing:
        raise VtrError(f"{benchmark.source}: clip {missing[0]} of the benchmark is not in split {benchmark.split}")
    keep = [position[clip.video_id] for _, clip in benchmark.clips]
    queries = [clip.query for _, clip in benchmark.clips]
    return RetrievalDataset(f"{dataset.name}-clips", [dataset.video_ids[i] for i in keep],
                            [dataset.video_paths[i] for i in keep], queries, np.arange(len(keep)), queries,
                            np.arange(len(keep)))


def clip_ceiling(head: RetrievalHead, clips: RetrievalDataset, backbone: Backbone, num_frames: int,
                 cache: str | None) -> float:
    """The head's text-to-video R@1 on the clips, whole, as `evaluate_head` computes it for `eval`.

    The queries stand in for the captions: the video-to-text half is not reported here.
    """
    from vtr_core.training import caption_features, evaluate_head, video_features

    videos = video_features(clips, backbone, cache, num_frames=num_frames)
    queries = caption_features(clips.queries, backbone, cache)
    truth = torch.as_tensor(clips.query_video)
    result = evaluate_head(head, videos.frames, videos.patches, queries, truth, queries, truth,
                           rerank_top_k=head.eval_rerank_top_k, raw=videos.raw)
    return float(result.plain["t2v"]["R@1"])


def recorded_ceiling(method: str, source: str, benchmark: MomentBenchmark, results: Path) -> float | None:
    """The clip-level test300 text-to-video R@1 of the method's head as docs/results.json records it
    (None unless the benchmark holds all of test300 and the file has the row)."""
    if benchmark.split != "test300" or not results.is_file():
        return None
    rows = json.loads(results.read_text()).get("test300", [])
    count = len(benchmark.clips)
    wanted = "zero-shot" if source == "zero-shot" else "trained"
    for row in rows:
        if row["method"] == method and row["head_source"].startswith(wanted) and row["plain"]["t2v"]["count"] == count:
            return float(row["plain"]["t2v"]["R@1"])
    return None


def training_corpus(benchmark: MomentBenchmark) -> list[str] | None:
    """Captions that seed a zero-shot s3ma's concepts: MSR-VTT's train700, never the test split's."""
    from vtr_core.training.data import load_dataset

    if benchmark.split == "train700" or not (Path(benchmark.source) / "MSRVTT_JSFUSION_test.csv").is_file():
        return None
    return load_dataset(benchmark.source, "train700").captions


def benchmark_summary(benchmark: MomentBenchmark) -> dict:
    durations = [v.duration_s for v in benchmark.videos]
    return {"name": benchmark.name, "split": benchmark.split, "seed": benchmark.seed,
            "clips_per_video": benchmark.clips_per_video, "videos": len(benchmark.videos),
            "queries": len(benchmark.clips), "fps": benchmark.fps, "size": [benchmark.width, benchmark.height],
            "mean_video_s": float(np.mean(durations)),
            "mean_clip_s": float(np.mean([c.end_s - c.start_s for _, c in benchmark.clips]))}


def _ceilings(heads: list[tuple[RetrievalHead, str]], benchmark: MomentBenchmark, backbone: Backbone,
              num_frames: int, how: str, cache: str | None, results: Path, log: Log) -> tuple[list, str]:
    """Each head's clip-level R@1 on the benchmark's clips, and a line saying where the figures come from."""
    if how == "none":
        return [None] * len(heads), "none"
    if how == "results":
        found = [recorded_ceiling(head.name, source, benchmark, results) for head, source in heads]
        return found, f"{results.name}: the {benchmark.split} text-to-video R@1 recorded for each head"
    clips = clip_dataset(benchmark)
    found = []
    for head, _ in heads:
        found.append(clip_ceiling(head, clips, backbone, num_frames, cache))
        log(f"clip-level ceiling of {head.name}: text-to-video R@1 {found[-1]:.1f} on {len(clips)} clips")
    return found, (f"computed: each head's text-to-video R@1 on the same {len(clips)} {benchmark.split} clips, "
                   "whole (the evaluation code of the eval command)")


def run_moments_eval(bench_dir: str | Path, policies: list[str], backbone: Backbone,
                     methods: tuple[str, ...] | list[str] = DEFAULT_METHODS, index_root: str | Path | None = None,
                     num_frames: int = 12, top_k: int = TOP_K, zero_shot: bool = False, ceiling: str = "compute",
                     merge: bool = True, cache: str | None = None, results: str | Path | None = None, log: Log = print,
                     progress: Callable[[str], Callable] | None = None) -> MomentsEval:
    """Every method on every policy's index of a benchmark folder; indexes kept under `index_root`
    (default: the benchmark's indexes/ folder), one per backbone, frame count and policy. `progress`
    makes the indexer's progress callback for a policy."""
    from vtr_core.methods import backbone_slug
    from vtr_core.resources import results_json
    from vtr_core.video.moments import MomentPolicy

    started = time.perf_counter()
    bench_dir = Path(bench_dir)
    benchmark = load_benchmark(bench_dir)
    if ceiling not in CEILINGS:
        raise VtrError(f"unknown ceiling {ceiling!r}: use one of {', '.join(CEILINGS)}")
    if not policies:
        raise VtrError("name at least one moment policy")
    index_root = Path(index_root) if index_root else bench_dir / "indexes"
    corpus = training_corpus(benchmark) if zero_shot else None
    heads = [resolve_head(m, backbone, None, zero_shot, num_frames=num_frames, corpus=corpus) for m in methods]
    ceilings, described = _ceilings(heads, benchmark, backbone, num_frames, ceiling, cache,
                                    Path(results) if results else results_json(), log)
    run = MomentsEval(benchmark_summary(benchmark), backbone.spec, backbone.id, num_frames, top_k, described, merge)
    for policy in policies:
        spec = MomentPolicy.parse(policy).spec
        index_dir = index_root / f"{backbone_slug(backbone)}-t{num_frames}-{policy_slug(spec)}"
        index, seconds = index_policy(bench_dir, spec, index_dir, backbone, num_frames, progress and progress(spec))
        lengths = [m.end_s - m.start_s for m in index.moments]
        result = PolicyResult(policy, spec, str(index_dir), index.num_videos, len(index), float(np.mean(lengths)),
                              seconds)
        log(f"{spec}: {result.videos} videos, {result.moments} moments of {result.mean_moment_s:.1f} s on average "
            f"({seconds:.0f} s to index)")
        for (head, source), clip_r1 in zip(heads, ceilings):
            result.methods.append(evaluate_method(index, backbone, head, source, benchmark, top_k, clip_r1, merge))
            log(f"{spec} {head.name}: R@1@0.5 {result.methods[-1].metrics['R@1@0.5']:.1f}")
        run.policies.append(result)
    run.seconds = time.perf_counter() - started
    return run


def write_hits(run: MomentsEval, benchmark: MomentBenchmark, path: str | Path) -> None:
    """Every query's ranked hits, one JSON line per (policy, method, query), to check the metrics by."""
    truths = truths_of(benchmark)
    queries = [clip.query for _, clip in benchmark.clips]
    with open(path, "w", encoding="utf-8") as handle:
        for policy in run.policies:
            for method in policy.methods:
                for number, (query, truth, hits) in enumerate(zip(queries, truths, method.hits)):
                    handle.write(json.dumps({"policy": policy.policy, "method": method.method, "query": number,
                                             "text": query, "truth": asdict(truth), "hits": hits},
                                            ensure_ascii=False) + "\n")
