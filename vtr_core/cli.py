"""Command line: `python -m vtr_core index|search|remove|info ...`.

Thin: parses arguments, shows progress, prints results; the work is done by the library. A
`VtrError` (bad input) is printed as one line `error: ...` with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vtr_core.contracts import open_with_backbone
from vtr_core.errors import IndexMismatchError, VtrError

# the library names its settings in errors (VtrError.setting); the command line names its flags
SETTING_FLAGS = {"backbone": "--backbone", "num_frames": "--frames", "faiss_factory": "--faiss",
                 "store_patches": "--no-patches", "checkpoint": "--checkpoint / --zero-shot", "output": "--output"}


def _progress_bar(description: str, unit: str = "video"):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int, item: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True, file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(item[-40:], refresh=False)
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_index(args: argparse.Namespace) -> int:
    from vtr_core.backbones import create_backbone
    from vtr_core.index import VideoIndex
    from vtr_core.indexing.indexer import index_folder

    frames, store_patches, faiss_factory = args.frames or 12, not args.no_patches, args.faiss or "Flat"
    if VideoIndex.exists(args.index):  # an existing index keeps its settings; asking for others is an error
        header = VideoIndex.open(args.index).header  # checked before the backbone loads: the answer is immediate
        for option, asked, built in (("--frames", args.frames, header.num_frames),
                                     ("--faiss", args.faiss, header.faiss_factory)):
            if asked is not None and asked != built:
                raise IndexMismatchError(f"index {args.index} was built with {option} {built}; this run asks for "
                                         f"{asked}: index into a new directory to change it")
        index, backbone = open_with_backbone(args.index, args.backbone, args.device)
        frames = args.frames or index.header.num_frames
        store_patches = index.header.store_patches and not args.no_patches
        faiss_factory = args.faiss or index.header.faiss_factory
    else:
        backbone = create_backbone(args.backbone, args.device)
    print(f"backbone: {backbone.spec} ({backbone.id}) on {backbone.device}", file=sys.stderr)
    report = index_folder(
        args.video_dir,
        args.index,
        backbone,
        num_frames=frames,
        store_patches=store_patches,
        faiss_factory=faiss_factory,
        prune=args.prune,
        batch_frames=args.batch_frames,
        decode_workers=args.workers,
        progress=None if args.quiet else _progress_bar("indexing"),
    )
    for path, reason in report.failed:
        print(f"skipped: {reason}", file=sys.stderr)
    print(report.summary())
    if args.report:
        Path(args.report).write_text(json.dumps(report.__dict__ | {"videos_per_second": report.videos_per_second}, indent=1))
    return 1 if report.failed else 0


def cmd_search(args: argparse.Namespace) -> int:
    from vtr_core.methods import best_shipped_method, read_checkpoint, resolve_head
    from vtr_core.retrieval.search import Searcher

    if (args.query is None) == (args.queries is None):
        raise VtrError("give one query, or --queries FILE with one query per line")
    if args.queries:
        try:
            queries = [line.strip() for line in Path(args.queries).read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise VtrError(f"{args.queries}: cannot read queries ({exc})") from None
        queries = [q for q in queries if q]
    else:
        queries = [args.query]
    index, backbone = open_with_backbone(args.index, args.backbone, args.device)
    # a checkpoint names its own method; without one, the shipped head with the best validation score
    method = args.method or (read_checkpoint(args.checkpoint)["method"] if args.checkpoint else best_shipped_method(backbone))
    head, source = resolve_head(method, backbone, args.checkpoint, args.zero_shot,
                                num_frames=index.header.num_frames)
    if not args.json:
        print(f"backbone: {backbone.spec} on {backbone.device}; index: {len(index)} videos; "
              f"method: {method} ({source})", file=sys.stderr)
    results = Searcher(index, backbone, head).search(queries, top_k=args.top_k, rerank_top_k=args.rerank_top_k)
    for query, hits in zip(queries, results):
        if args.json:
            print(json.dumps({"query": query, "results": [h.to_dict() for h in hits]}, ensure_ascii=False))
        else:
            print(f"\n{query}")
            for hit in hits:
                moved = f"  (stage 1: #{hit.coarse_rank})" if hit.reranked else ""
                print(f"  {hit.rank:3d}. {hit.score:7.4f}  {hit.video_id}  {hit.path}{moved}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from vtr_core.indexing.indexer import remove_videos

    removed = remove_videos(args.index, args.video_ids)
    print(f"removed {len(removed)} videos from {args.index}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from vtr_core.index import VideoIndex

    info = VideoIndex.open(args.index).describe()
    print(json.dumps(info, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def _load_split(args: argparse.Namespace, backbone, split: str):
    """A dataset split with its stored video features and caption features."""
    from vtr_core.training.data import load_dataset
    from vtr_core.training.features import caption_features, video_features

    dataset = load_dataset(args.data_dir, split)
    videos = video_features(dataset, backbone, args.cache, progress=_progress_bar(f"features {split}"))
    return dataset, videos, caption_features(dataset.queries, backbone, args.cache), \
        caption_features(dataset.captions, backbone, args.cache)


def _training_corpus(args: argparse.Namespace) -> list[str]:
    """Captions whose words seed s3ma's concept bank: the training split's, never the test's."""
    from vtr_core.training.data import load_dataset

    try:
        return load_dataset(args.data_dir, "train700").captions
    except VtrError:
        return []


def _format_metrics(m: dict) -> str:
    return f"R@1 {m['R@1']:5.1f}  R@5 {m['R@5']:5.1f}  R@10 {m['R@10']:5.1f}  MdR {m['MdR']:6.1f}  MnR {m['MnR']:7.1f}"


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from vtr_core.backbones import create_backbone
    from vtr_core.methods import resolve_head
    from vtr_core.training.evaluate import evaluate_head

    backbone = create_backbone(args.backbone, args.device)
    dataset, videos, queries, captions = _load_split(args, backbone, args.split)
    head, source = resolve_head(args.method, backbone, args.checkpoint, args.zero_shot,
                                num_frames=videos.frames.shape[1], corpus=_training_corpus(args))
    rerank = None if args.all_pairs else (args.rerank_top_k or head.eval_rerank_top_k)
    result = evaluate_head(head, videos.frames, videos.patches, queries, torch.as_tensor(dataset.query_video),
                           captions, torch.as_tensor(dataset.caption_video), rerank_top_k=rerank,
                           dsl_temperature=args.dsl_temperature, method=args.method, backbone=backbone.spec,
                           split=args.split, head_source=source, reviser=args.reviser, raw=videos.raw)
    print(f"{args.method} on {dataset.name} ({len(dataset)} videos, {len(dataset.queries)} queries, "
          f"{len(dataset.captions)} captions), backbone {backbone.spec}, head {source}")
    revised = "DSL" if args.reviser == "dsl" else "inverted softmax"
    for label, row in (("", result.plain), (f"{revised}, transductive ", result.dsl)):
        print(f"  {label}text-to-video  {_format_metrics(row['t2v'])}")
        print(f"  {label}video-to-text  {_format_metrics(row['v2t'])}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.as_record(args.dsl), indent=1))
    return 0


def _head_settings(pairs: list[str]) -> dict:
    """`--set temporal_layers=1 --set num_concepts=512` -> typed head-config overrides."""
    settings = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise VtrError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    return settings


def _fine_tune(args: argparse.Namespace, backbone) -> int:
    """train --end-to-end: backbone and head together, from decoded frames (a GPU is advised)."""
    import torch

    from vtr_core.methods import create_head
    from vtr_core.training.data import load_dataset
    from vtr_core.training.train import (
        EndToEndData,
        TrainConfig,
        fine_tune,
        prepare_pixels,
    )

    dataset = load_dataset(args.data_dir, args.split)
    frames = args.frames or 12
    pixels = prepare_pixels(dataset.video_paths, backbone, frames, progress=_progress_bar("decoding"))
    head = create_head(args.method, backbone, num_frames=frames, corpus=dataset.captions, seed=args.seed,
                       **_head_settings(args.set))
    output = Path(args.output or f"runs/{args.method}-finetuned")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         weight_decay=args.weight_decay)
    result, spec = fine_tune(backbone, head, EndToEndData(pixels, dataset.captions, torch.as_tensor(dataset.caption_video)),
                             config, output, frames, backbone_lr_scale=args.backbone_lr_scale)
    print(f"fine-tuned {result.steps} steps in {result.seconds:.0f} s; backbone {spec}; head {output / 'best.pt'}")
    print(f"index with it: python -m vtr_core index VIDEO_DIR --index NEW_INDEX --backbone {spec}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from vtr_core.backbones import create_backbone
    from vtr_core.methods import backbone_slug, create_head, load_head, save_head
    from vtr_core.resources import shipped_heads_dir
    from vtr_core.training.train import (
        TrainConfig,
        TrainData,
        ValidationData,
        init_distributed,
        train_head,
        world,
    )

    init_distributed()
    rank, _ = world()
    backbone = create_backbone(args.backbone, args.device)
    if args.end_to_end:
        return _fine_tune(args, backbone)
    holdout = args.split == "train700" and not args.no_holdout
    train_split = "train" if holdout else args.split
    dataset, videos, _, captions = _load_split(args, backbone, train_split)
    validation = None
    if holdout:
        val_set, val_videos, val_queries, val_captions = _load_split(args, backbone, "val")
        validation = ValidationData(val_videos.frames, val_videos.patches, val_queries,
                                    torch.as_tensor(val_set.query_video), val_captions, torch.as_tensor(val_set.caption_video),
                                    raw=val_videos.raw)
    num_frames = videos.frames.shape[1]
    head = create_head(args.method, backbone, num_frames=num_frames, corpus=dataset.captions, seed=args.seed,
                       **_head_settings(args.set)).to(backbone.device)
    output = Path(args.output or f"runs/{args.method}-{backbone_slug(backbone)}")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         weight_decay=args.weight_decay)
    if rank == 0:
        print(f"training {args.method} on {dataset.name} ({len(dataset)} videos, {len(dataset.captions)} captions), "
              f"backbone {backbone.spec}, validation {'val (100 held-out train700 videos)' if holdout else 'none'}")
    step_progress = None
    if rank == 0:
        bar = _progress_bar("training", unit="step")

        def step_progress(done: int, total: int) -> None:
            bar(done, total, f"epoch {done * config.epochs // max(1, total)}")

    result = train_head(
        head, TrainData(videos.frames, videos.patches, captions, torch.as_tensor(dataset.caption_video), raw=videos.raw),
        config, output, backbone.id, num_frames, validation=validation, resume=args.resume,
        log=print if rank == 0 else (lambda message: None),
        progress=step_progress,
    )
    if rank == 0:
        print(f"best epoch {result.best_epoch} (validation R-sum {result.best_score:.1f}); "
              f"{result.steps} steps in {result.seconds:.0f} s; checkpoint {output / 'best.pt'}")
        (output / "history.json").write_text(json.dumps(result.history, indent=1))
        if args.ship:
            shipped = shipped_heads_dir()
            shipped.mkdir(parents=True, exist_ok=True)
            target = shipped / f"{args.method}-{backbone_slug(backbone)}.pt"
            best = load_head(output / "best.pt", backbone, method=args.method, num_frames=num_frames)
            save_head(best, target, backbone.id, num_frames, half=True,
                      extra=torch.load(output / "best.pt", map_location="cpu", weights_only=True)["training"])
            print(f"shipped as {target}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vtr_core.backbones import create_backbone
    from vtr_core.studies.report import run_report, write_report

    backbone = create_backbone(args.backbone, args.device)
    report = run_report(args.data_dir, backbone, args.cache, log=lambda m: print(m, file=sys.stderr))
    write_report(report, Path(args.docs), None if args.no_readme else Path(args.readme))
    print(f"wrote {args.docs}/RESULTS.md and {args.docs}/results.json" + ("" if args.no_readme else f"; updated {args.readme}"))
    return 0


def cmd_accuracy(args: argparse.Namespace) -> int:
    from vtr_core.studies.accuracy import run_study, write_study

    study = run_study(args.data_dir, args.cache, folds=args.folds, epochs=args.epochs,
                      log=lambda m: print(m, file=sys.stderr))
    write_study(study, Path(args.docs) / "ACCURACY.md", Path(args.docs) / "accuracy.json")
    print(f"wrote {args.docs}/ACCURACY.md and {args.docs}/accuracy.json ({study.seconds:.0f} s)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from vtr_core.studies import bench

    if args.suite == "report":
        bench.write_performance(args.bench_dir, Path(args.docs) / "PERFORMANCE.md", Path(args.docs) / "results.json")
        print(f"wrote {args.docs}/PERFORMANCE.md from {args.bench_dir}/*.json")
        return 0
    if args.json is None:
        raise VtrError("give --json OUT for the results")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vtr-bench-") as weights:
        result = _run_bench_suite(args, bench, Path(weights))
    bench.write_json(result, args.json)
    print(f"wrote {args.json}")
    return 0


def _real_like_vectors(args: argparse.Namespace, bench, backbone):
    """The query suite's real-like vectors: fitted to a dataset's videos, with its captions as queries."""
    from vtr_core.methods import meanp
    from vtr_core.training.data import load_dataset
    from vtr_core.training.features import caption_features, video_features

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
                                   log=lambda m: print(m, file=sys.stderr))
        result.text_backbone = args.backbone
    elif args.suite == "indexing":
        specs = [spec_of(name) for name in args.backbones.split(",") if name]
        result = bench.indexing_suite(args.videos, specs, device=args.device, max_videos=args.max_videos,
                                      copies=args.copies, workers=args.workers, log=lambda m: print(m, file=sys.stderr))
    elif args.suite == "training":
        result = bench.training_suite(create_backbone(spec_of(args.backbone), args.device), ["meanp", "s3ma", "eercf", "camoe"],
                                      videos=args.train_videos, log=lambda m: print(m, file=sys.stderr))
    else:  # memory
        if not args.index:
            raise VtrError("bench memory needs --index DIR")
        result = bench.index_memory(args.index)
        result["explorer"] = bench.explorer_at_rest(args.index, args.device)
        result["peak_rss_bytes"] = bench.peak_rss_bytes()
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vtr_core", description="Video-text retrieval explorer")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, backbone_default: str | None) -> None:
        p.add_argument("--index", required=True, help="index directory")
        p.add_argument("--backbone", default=backbone_default,
                       help="auto | lite | clip:ARCH/PRETRAINED_OR_PATH (default: auto, or the index's own)")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")

    p = sub.add_parser("index", help="index (or update) a folder of videos")
    p.add_argument("video_dir")
    common(p, "auto")
    p.add_argument("--frames", type=int, default=None, help="frames sampled uniformly per video (default 12)")
    p.add_argument("--no-patches", action="store_true", help="do not store patch tokens (about 40x smaller)")
    p.add_argument("--faiss", default=None, help="faiss factory string for the coarse index (default Flat; HNSW32, ...)")
    p.add_argument("--prune", action="store_true", help="remove indexed videos that are no longer on disk")
    p.add_argument("--batch-frames", type=int, default=None, help="frames per encoder batch")
    p.add_argument("--workers", type=int, default=None,
                   help="decode workers: threads, or processes when a GPU encodes (default: one per core, 2 to 16)")
    p.add_argument("--report", help="write the run's report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="text-to-video search")
    p.add_argument("query", nargs="?")
    common(p, None)
    p.add_argument("--queries", help="file with one query per line")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--method", default=None,
                   help="meanp | s3ma | eercf | camoe (default: the shipped head with the best validation score)")
    p.add_argument("--checkpoint", help="head checkpoint (default: the shipped one for this method and backbone)")
    p.add_argument("--zero-shot", action="store_true", help="an untrained head")
    p.add_argument("--rerank-top-k", type=int, default=None, help="stage-2 candidates (default: the method's)")
    p.add_argument("--json", action="store_true", help="one JSON line per query")
    p.set_defaults(func=cmd_search)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--method", required=True, help="meanp | s3ma | eercf | camoe")
        p.add_argument("--backbone", default="auto", help="auto | lite | clip:ARCH/PRETRAINED_OR_PATH")
        p.add_argument("--data-dir", required=True, help="MSR-VTT folder, or a folder of videos with captions.jsonl")
        p.add_argument("--device", default="auto")
        p.add_argument("--cache", default=None, help="feature cache folder (default ~/.cache/vtr_core/features)")

    p = sub.add_parser("eval", help="R@1/5/10, MdR, MnR both directions, with and without DSL")
    data_args(p)
    p.add_argument("--split", default="test300", help="1kA | test300 | val | train700 | train")
    p.add_argument("--checkpoint", help="head checkpoint (default: the shipped one for this method and backbone)")
    p.add_argument("--zero-shot", action="store_true", help="an untrained head")
    p.add_argument("--dsl", action="store_true", help="write the dual-softmax row to --json (transductive)")
    p.add_argument("--dsl-temperature", type=float, default=1.0, help="on logit-scaled scores")
    p.add_argument("--reviser", choices=["dsl", "inverted"], default="dsl",
                   help="the transductive reviser of the second row: dual softmax or inverted softmax")
    p.add_argument("--rerank-top-k", type=int, default=None, help="two-stage candidates (eercf default 50)")
    p.add_argument("--all-pairs", action="store_true", help="score every pair finely (no two-stage)")
    p.add_argument("--json", help="write the result here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train a head on stored backbone features")
    data_args(p)
    p.add_argument("--split", default="train700")
    p.add_argument("--no-holdout", action="store_true", help="train on all of train700, no validation")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="chosen on the validation split (1e-4, 1e-3, 3e-3 tried)")
    p.add_argument("--weight-decay", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output", help="run folder (default runs/METHOD-BACKBONE)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    p.add_argument("--ship", action="store_true", help="copy the best checkpoint to precomputed/heads/ (float16)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="head setting, e.g. temporal_layers=1")
    p.add_argument("--end-to-end", action="store_true",
                   help="fine-tune a clip backbone with the head, from decoded frames (GPU advised)")
    p.add_argument("--backbone-lr-scale", type=float, default=1e-3, help="backbone lr = lr x this (end-to-end)")
    p.add_argument("--frames", type=int, default=None, help="frames per video (end-to-end; default 12)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("report", help="evaluate everything and regenerate the results table")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--backbone", default="lite")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=None)
    p.add_argument("--docs", default="docs")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--no-readme", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("accuracy", help="the lite backbone's accuracy study: regenerate docs/ACCURACY.md")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache", default=None)
    p.add_argument("--docs", default="docs")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over train700")
    p.add_argument("--epochs", type=int, default=20, help="epochs per cross-validated training run")
    p.set_defaults(func=cmd_accuracy)

    p = sub.add_parser("bench", help="benchmarks: query | indexing | training | memory, or report (docs/PERFORMANCE.md)")
    p.add_argument("suite", choices=["query", "indexing", "training", "memory", "report"])
    p.add_argument("--json", help="where the suite's results go (JSON)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--sizes", default="1000,10000,100000", help="query suite: numbers of videos, comma-separated")
    p.add_argument("--repeats", type=int, default=100, help="query suite: timed repeats per figure")
    p.add_argument("--index", help="memory suite: the index to measure")
    p.add_argument("--videos", default="assets/videos", help="indexing suite: a folder of videos")
    p.add_argument("--max-videos", type=int, default=24, help="indexing suite: videos taken from the folder")
    p.add_argument("--backbones", default="lite,ViT-B-32,ViT-B-16",
                   help="indexing suite: lite and/or open_clip architectures (random weights: speed does not depend on them)")
    p.add_argument("--backbone", default="lite", help="query and training suites: lite or an open_clip architecture")
    p.add_argument("--copies", type=int, default=1, help="indexing suite: index each video this many times (longer runs)")
    p.add_argument("--workers", type=int, default=None, help="indexing suite: decoding threads (default: one per core)")
    p.add_argument("--train-videos", type=int, default=256, help="training suite: synthetic videos per epoch")
    p.add_argument("--no-hnsw", action="store_true", help="query suite: skip faiss HNSW (slow to build at 1M)")
    p.add_argument("--fit-to", metavar="DATA_DIR", help="query suite: video vectors drawn from a Gaussian fitted to this "
                   "dataset's videos, its captions as queries (default: uniformly random unit vectors)")
    p.add_argument("--fit-split", default="1kA", help="query suite: the split of --fit-to")
    p.add_argument("--bench-dir", default="docs/bench", help="report: where the suites' JSON files are")
    p.add_argument("--docs", default="docs")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("remove", help="remove videos from an index by id")
    p.add_argument("video_ids", nargs="+")
    p.add_argument("--index", required=True)
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("info", help="what an index holds")
    p.add_argument("--index", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if (getattr(args, "frames", None) or 12) < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except VtrError as exc:
        flag = SETTING_FLAGS.get(exc.setting or "")
        print(f"error: {exc}" + (f" ({flag})" if flag else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: work committed so far is kept", file=sys.stderr)
        return 130
