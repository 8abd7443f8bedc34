"""The long-video moment benchmark commands: build-moments (join a split's clips into long
videos with ground truth) and eval-moments (index them per moment policy, score every method)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vtr_core.cli.progress import log_to_stderr, progress_bar
from vtr_core.errors import VtrError


def cmd_build_moments(args: argparse.Namespace) -> int:
    from vtr_core.studies.moments.build import GROUND_TRUTH, build_split_benchmark

    benchmark = build_split_benchmark(args.data, args.split, args.out, clips_per_video=args.clips_per_video,
                                      seed=args.seed, max_videos=args.max_videos,
                                      progress=None if args.quiet else progress_bar("building", unit="video"))
    queries = sum(len(v.clips) for v in benchmark.videos)
    seconds = sum(v.duration_s for v in benchmark.videos)
    print(f"{benchmark.name}: {len(benchmark.videos)} long videos ({seconds / 60:.1f} min, "
          f"{benchmark.width}x{benchmark.height} at {benchmark.fps:g} fps), {queries} queries; "
          f"ground truth {Path(args.out) / GROUND_TRUTH}")
    return 0


def _methods(text: str) -> list[str]:
    from vtr_core.methods import METHODS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise VtrError(f"--methods: unknown method {unknown[0] if unknown else text!r}; use {', '.join(METHODS)}")
    return names


def cmd_eval_moments(args: argparse.Namespace) -> int:
    from vtr_core.backbones import create_backbone
    from vtr_core.studies.moments.build import load_benchmark
    from vtr_core.studies.moments.evaluate import run_moments_eval, write_hits
    from vtr_core.studies.moments.tables import moments_table
    from vtr_core.video.moments import DEFAULT_MOMENTS, MomentPolicy

    methods = _methods(args.methods)
    policies = args.moments or [DEFAULT_MOMENTS]
    for policy in policies:  # immediate, as the benchmark: before the backbone loads
        MomentPolicy.parse(policy)
    benchmark = load_benchmark(args.benchmark)
    backbone = create_backbone(args.backbone, args.device)
    run = run_moments_eval(args.benchmark, policies, backbone, methods, index_root=args.index_root,
                           num_frames=args.frames, top_k=args.top_k, zero_shot=args.zero_shot, ceiling=args.ceiling,
                           merge=not args.no_merge, cache=args.cache, results=args.results, log=log_to_stderr,
                           progress=None if args.quiet else (lambda spec: progress_bar(f"indexing {spec}")))
    print(moments_table(run.to_dict()))
    print(f"ceiling: {run.ceiling}; {run.seconds:.0f} s", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(run.to_dict(), indent=1))
        print(f"wrote {args.json}", file=sys.stderr)
    if args.hits:
        write_hits(run, benchmark, args.hits)
    return 0
