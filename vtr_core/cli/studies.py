"""The bench command: the query, indexing, training, memory and scale suites, and docs/PERFORMANCE.md from their
results."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtr_core.cli.progress import log_to_stderr
from vtr_core.errors import VtrError


def cmd_bench(args: argparse.Namespace) -> int:
    from vtr_core.studies import bench

    if args.suite == "report":
        bench.write_performance(args.bench_dir, Path(args.docs) / "PERFORMANCE.md", Path(args.docs) / "results.json")
        print(f"wrote {args.docs}/PERFORMANCE.md from {args.bench_dir}/*.json")
        return 0
    if args.suite == "long-corpus":
        return _long_corpus(args)
    if args.json is None:
        raise VtrError("give --json OUT for the results")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vtr-bench-") as weights:
        result = _run_bench_suite(args, bench, Path(weights))
    bench.write_json(result, args.json)
    print(f"wrote {args.json}")
    return 0


def _long_corpus(args: argparse.Namespace) -> int:
    """`bench long-corpus --videos CLIPS --out FILE [--seconds 3600 --size 320x240 --fps 30]`."""
    from vtr_core.indexing import scan_videos
    from vtr_core.studies.bench.long_corpus import write_long_video

    if not args.out:
        raise VtrError("give --out FILE for the long video")
    try:
        width, height = (int(n) for n in args.size.lower().split("x"))
    except ValueError:
        raise VtrError(f"--size must read WIDTHxHEIGHT, got {args.size!r}") from None
    made = write_long_video(scan_videos(Path(args.videos)), Path(args.out), args.seconds, width, height, args.fps)
    print(f"wrote {made['file']}: {made['seconds']:.0f} s, {made['frames']} frames at {width}x{height}, {args.fps} fps")
    return 0


def _real_like_vectors(args: argparse.Namespace, bench, backbone):
    """The query suite's real-like vectors: fitted to a dataset's videos, with its captions as queries."""
    from vtr_core.methods import meanp
    from vtr_core.training import caption_features, load_dataset, video_features

    dataset = load_dataset(args.fit_to, args.fit_split)
    videos = meanp.video_embedding(video_features(dataset, backbone, with_patches=False).frames).numpy()
    captions = caption_features(dataset.captions, backbone).sentence.float().numpy()
    return bench.real_like_vectors(videos, captions, f"a Gaussian fitted to the {backbone.spec} vectors of {len(dataset):,} "
                                                     f"{dataset.name} videos; queries: {len(captions):,} of their captions")


def _run_bench_suite(args: argparse.Namespace, bench, weights: Path):
    from vtr_core.backbones import create_backbone

    def spec_of(name: str) -> str:  # "lite", or an open_clip architecture with weights the benchmark saves
        return name if name == "lite" else bench.random_clip_spec(name, weights)

    if args.suite == "query":
        backbone = create_backbone(spec_of(args.backbone), args.device)
        sizes = [int(n) for n in args.sizes.split(",")]
        result = bench.query_suite(sizes, dim=backbone.embed_dim, repeats=args.repeats, encode=backbone.encode_text,
                                   hnsw_from=None if args.no_hnsw else 10_000, device=str(backbone.device),
                                   real_like=_real_like_vectors(args, bench, backbone) if args.fit_to else None,
                                   log=log_to_stderr)
        result.text_backbone = args.backbone
    elif args.suite == "indexing":
        specs = [spec_of(name) for name in args.backbones.split(",") if name]
        result = bench.indexing_suite(args.videos, specs, device=args.device, max_videos=args.max_videos,
                                      copies=args.copies, workers=args.workers, log=log_to_stderr,
                                      frames_per_hour=args.frames_per_hour, long_videos=args.long_videos,
                                      moments=args.moments)
    elif args.suite == "training":
        result = bench.training_suite(create_backbone(spec_of(args.backbone), args.device), ["meanp", "s3ma", "eercf", "camoe"],
                                      videos=args.train_videos, log=log_to_stderr)
    elif args.suite == "scale":
        result = _scale_suite(args, bench, spec_of)
    else:  # memory
        if not args.index:
            raise VtrError("bench memory needs --index DIR")
        result = bench.index_memory(args.index)
        result["explorer"] = bench.explorer_at_rest(args.index, args.device)
        result["peak_rss_bytes"] = bench.peak_rss_bytes()
    return result


def _scale_suite(args: argparse.Namespace, bench, spec_of) -> object:
    """The scale suite: synthetic moments, or with --fit-to frames drawn like the backbone's MSR-VTT vectors."""
    real_like, dim = None, args.dim
    if args.fit_to:
        from vtr_core.backbones import create_backbone

        backbone = create_backbone(spec_of(args.backbone), args.device)
        real_like, dim = _real_like_vectors(args, bench, backbone), backbone.embed_dim
    sizes = [int(n) for n in args.sizes.split(",") if n]
    return bench.scale_suite(sizes, dim=dim, frames=args.frames, commit_every=args.commit_every, queries=args.queries,
                             real_like=real_like, keep_dir=args.index, log=log_to_stderr)
