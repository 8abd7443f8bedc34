"""The command line's arguments: one function a command, added in the order `--help` lists them."""

from __future__ import annotations

import argparse

from vtr_core.cli.collection import cmd_index, cmd_info, cmd_remove, cmd_search, cmd_upgrade
from vtr_core.cli.moments import cmd_build_moments, cmd_eval_moments
from vtr_core.cli.studies import cmd_bench
from vtr_core.cli.training import cmd_accuracy, cmd_eval, cmd_import_checkpoint, cmd_report, cmd_train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vtr_core", description="Video-text retrieval explorer")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in (_add_index, _add_search, _add_eval, _add_train, _add_import_checkpoint, _add_report,
                        _add_accuracy, _add_bench, _add_build_moments, _add_eval_moments, _add_remove, _add_upgrade,
                        _add_info):
        add_command(sub)
    return parser


def _index_args(p: argparse.ArgumentParser, backbone_default: str | None) -> None:
    """What the commands that open an index with a backbone share."""
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--backbone", default=backbone_default,
                   help="auto | lite | clip:ARCH/PRETRAINED_OR_PATH (default: auto, or the index's own)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def _data_args(p: argparse.ArgumentParser) -> None:
    """What the commands that read a dataset with a method share (eval, train)."""
    p.add_argument("--method", required=True, help="meanp | s3ma | eercf | camoe")
    p.add_argument("--backbone", default="auto", help="auto | lite | clip:ARCH/PRETRAINED_OR_PATH")
    p.add_argument("--data-dir", required=True, help="MSR-VTT folder, or a folder of videos with captions.jsonl")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=None, help="feature cache folder (default ~/.cache/vtr_core/features)")


def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="index (or update) a folder of videos; under torchrun, "
                                        "one shard per process, merged into the index")
    p.add_argument("video_dir")
    _index_args(p, "auto")
    p.add_argument("--frames", type=int, default=None, help="frames sampled uniformly per video (default 12)")
    p.add_argument("--no-patches", action="store_true", help="do not store patch tokens (about 40x smaller)")
    p.add_argument("--faiss", default=None, help="faiss factory string for the coarse index (default auto: Flat below 20,000 videos, then HNSW32, then IVF-PQ with an exact re-score, by size and memory)")
    p.add_argument("--moments", default=None,
                   help="how videos over 32 s are cut into moments: window:LEN/STRIDE (fixed overlapping windows) "
                        "or shots[:MIN/MAX] (shot boundaries; shots under MIN seconds merged, over MAX cut into "
                        "windows); a video up to 32 s stays one moment (default: the index's own, or window:12/6)")
    p.add_argument("--prune", action="store_true", help="remove indexed videos that are no longer on disk")
    p.add_argument("--batch-frames", type=int, default=None, help="frames per encoder batch")
    p.add_argument("--workers", type=int, default=None,
                   help="decode workers: threads, or processes when a GPU encodes (default: one per core, 2 to 16)")
    p.add_argument("--report", help="write the run's report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="text-to-moment search: ranked time ranges of videos")
    p.add_argument("query", nargs="?")
    _index_args(p, None)
    p.add_argument("--queries", help="file with one query per line")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--method", default=None,
                   help="meanp | s3ma | eercf | camoe (default: the shipped head with the best validation score)")
    p.add_argument("--checkpoint", help="head checkpoint (default: the shipped one for this method and backbone)")
    p.add_argument("--zero-shot", action="store_true", help="an untrained head")
    p.add_argument("--rerank-top-k", type=int, default=None, help="stage-2 candidates (default: the method's)")
    p.add_argument("--per-video", action="store_true", help="each video's best range only")
    p.add_argument("--no-merge", action="store_true",
                   help="list every moment on its own (default: adjacent or overlapping hits of a video are merged "
                        "into one range, with the best score)")
    p.add_argument("--json", action="store_true", help="one JSON line per query")
    p.set_defaults(func=cmd_search)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="R@1/5/10, MdR, MnR both directions, with and without DSL")
    _data_args(p)
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


def _add_import_checkpoint(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-checkpoint", help="a model trained with the papers' code (EERCF, CLIP4Clip meanP or "
                                                 "seqTransf) as a clip backbone and its head")
    p.add_argument("file", help="the pytorch_model.bin the training code saved (read as plain tensors only)")
    p.add_argument("--format", required=True, choices=["eercf", "clip4clip"], help="the code that trained it")
    p.add_argument("--arch", default=None, help="ViT-B-32, ViT-B-16, ... (default: read off the weights)")
    p.add_argument("--out", required=True, help="folder for backbone.pt, head.pt and import.json")
    p.set_defaults(func=cmd_import_checkpoint)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a head on stored backbone features")
    _data_args(p)
    p.add_argument("--split", default="train700")
    p.add_argument("--no-holdout", action="store_true", help="train on all of train700, no validation")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4,
                   help="chosen on validation: meanp on lite, R-sum 150.4 at 1e-4 against 143.6 at 1e-3")
    p.add_argument("--weight-decay", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output", help="run folder (default runs/METHOD-BACKBONE)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    p.add_argument("--ship", action="store_true", help="copy the best checkpoint to precomputed/heads/ (float16); "
                   "with --end-to-end on lite, the text tower too, as the backbone TOWER:DATASET")
    p.add_argument("--caption-passes", type=int, default=1,
                   help="captions per video per epoch (1 chosen on validation: 20 overfit sooner)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="head setting, e.g. temporal_layers=1")
    p.add_argument("--end-to-end", action="store_true",
                   help="tune the backbone with the head: a clip backbone from decoded frames (GPU advised); "
                   "lite's text tower on stored video features (locked image)")
    p.add_argument("--backbone-lr-scale", type=float, default=None,
                   help="backbone lr = lr x this (end-to-end; default 1e-3 for clip, 1 for a lite text tower)")
    p.add_argument("--frames", type=int, default=None, help="frames per video (end-to-end; default 12)")
    p.add_argument("--image-stages", type=int, default=0, metavar="N",
                   help="end-to-end on lite: also tune the image tower's last N stages (their input cached once)")
    p.add_argument("--image-lr-scale", type=float, default=None,
                   help="image stages' lr = lr x this (with --image-stages; default 0.1)")
    p.set_defaults(func=cmd_train)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="evaluate everything and regenerate the results table")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--backbone", default="auto", help="default: the shipped default (auto)")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=None)
    p.add_argument("--docs", default="docs")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--no-readme", action="store_true")
    p.set_defaults(func=cmd_report)


def _add_accuracy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accuracy", help="the lite backbone's accuracy study: regenerate docs/ACCURACY.md")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache", default=None)
    p.add_argument("--docs", default="docs")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over train700")
    p.add_argument("--epochs", type=int, default=20, help="epochs per cross-validated training run")
    p.add_argument("--towers", metavar="RUNS.json", help="measure these configurations (label, backbone, head, "
                   "training, train_seconds, validation_only, shipped_default) into docs/towers.json and section "
                   "5; the stored study is kept")
    p.set_defaults(func=cmd_accuracy)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench",
                       help="benchmarks: query | indexing | training | memory | scale, or report (docs/PERFORMANCE.md); "
                       "long-corpus makes a long video from clips for indexing's --long-videos")
    p.add_argument("suite", choices=["query", "indexing", "training", "memory", "scale", "report", "long-corpus"])
    p.add_argument("--json", help="where the suite's results go (JSON)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--sizes", default="1000,10000,100000",
                   help="query and scale suites: numbers of videos (moments), comma-separated")
    p.add_argument("--repeats", type=int, default=100, help="query suite: timed repeats per figure")
    p.add_argument("--index", help="memory suite: the index to measure; scale suite: a folder to keep the built "
                   "indexes in (default: a temporary one, removed)")
    p.add_argument("--videos", default="assets/videos", help="indexing suite: a folder of videos")
    p.add_argument("--max-videos", type=int, default=24, help="indexing suite: videos taken from the folder")
    p.add_argument("--backbones", default="lite,ViT-B-32,ViT-B-16",
                   help="indexing suite: lite and/or open_clip architectures (random weights: speed does not depend on them)")
    p.add_argument("--backbone", default="lite", help="query and training suites: lite or an open_clip architecture")
    p.add_argument("--copies", type=int, default=1, help="indexing suite: index each video this many times (longer runs)")
    p.add_argument("--workers", type=int, default=None, help="indexing suite: decoding threads (default: one per core)")
    p.add_argument("--frames-per-hour", type=float, default=None,
                   help="indexing suite: frames an hour of long video yields (e.g. 2700: 12 per 32 s moment at a 16 s "
                   "stride), for the encoder's hours of video per hour")
    p.add_argument("--long-videos", action="append", default=None,
                   help="indexing suite: a folder of long videos the first backbone indexes end to end (hours of video "
                   "per hour); repeat for several")
    p.add_argument("--moments", default=None, help="indexing suite: the moment policy for --long-videos (default: the indexer's)")
    p.add_argument("--out", default=None, help="long-corpus: the long video to write (.mp4)")
    p.add_argument("--seconds", type=float, default=3600.0, help="long-corpus: its length (or as long as the clips last)")
    p.add_argument("--size", default="320x240", help="long-corpus: WIDTHxHEIGHT")
    p.add_argument("--fps", type=int, default=30, help="long-corpus: frames per second")
    p.add_argument("--train-videos", type=int, default=256, help="training suite: synthetic videos per epoch")
    p.add_argument("--no-hnsw", action="store_true", help="query suite: skip faiss HNSW (slow to build at 1M)")
    p.add_argument("--frames", type=int, default=12, help="scale suite: frame vectors per moment")
    p.add_argument("--dim", type=int, default=384, help="scale suite: vector width (with --fit-to: the backbone's)")
    p.add_argument("--commit-every", type=int, default=64, help="scale suite: moments per commit, as the indexer")
    p.add_argument("--queries", type=int, default=50, help="scale suite: timed queries per size")
    p.add_argument("--fit-to", metavar="DATA_DIR", help="query and scale suites: video vectors drawn from a Gaussian "
                   "fitted to this dataset's videos, its captions as queries (default: uniformly random unit vectors)")
    p.add_argument("--fit-split", default="1kA", help="query and scale suites: the split of --fit-to")
    p.add_argument("--bench-dir", default="docs/bench", help="report: where the suites' JSON files are")
    p.add_argument("--docs", default="docs")
    p.set_defaults(func=cmd_bench)



def _add_build_moments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-moments",
                       help="join the clips of a split into long videos with ground-truth ranges (for eval-moments)")
    p.add_argument("--data", required=True, help="MSR-VTT folder, or a folder of videos with captions.jsonl")
    p.add_argument("--split", default="test300", help="test300 (reporting) | train700 (tuning) | val | train | 1kA")
    p.add_argument("--out", required=True, help="the benchmark folder (outside the repository: derived from the data)")
    p.add_argument("--clips-per-video", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="of the clip order")
    p.add_argument("--max-videos", type=int, default=None, help="build only the first long videos (quick checks)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build_moments)


def _add_eval_moments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-moments", help="long-video moment retrieval: TVR's R@1/R@5 at tIoU 0.5/0.7 per method "
                                            "and moment policy, beside each head's clip-level R@1")
    p.add_argument("benchmark", help="a folder made by build-moments")
    p.add_argument("--moments", action="append", metavar="POLICY",
                   help="moment policy, as index --moments; repeat to compare several in one run (default: window:12/6)")
    p.add_argument("--methods", default="meanp,s3ma,eercf,camoe", help="comma-separated")
    p.add_argument("--backbone", default="auto", help="auto | lite | lite0 | clip:ARCH/PRETRAINED_OR_PATH")
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", type=int, default=12, help="frames per moment")
    p.add_argument("--zero-shot", action="store_true", help="untrained heads (default: the shipped trained ones)")
    p.add_argument("--top-k", type=int, default=5, help="ranges per query, after merging")
    p.add_argument("--no-merge", action="store_true",
                   help="score every moment on its own (default: adjacent hits of a video merged, as search does)")
    p.add_argument("--index-root", help="where each policy's index is kept and reused (default BENCHMARK/indexes)")
    p.add_argument("--ceiling", choices=["compute", "results", "none"], default="compute",
                   help="clip-level R@1: computed on the same clips (default), read from docs/results.json, or none")
    p.add_argument("--results", help="the results.json for --ceiling results (default: the shipped one)")
    p.add_argument("--cache", default=None, help="feature cache folder for the computed ceiling")
    p.add_argument("--json", help="write the run here (e.g. docs/bench/moments-lite.json)")
    p.add_argument("--hits", help="write every query's ranked hits here (JSON lines)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval_moments)


def _add_remove(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remove", help="remove videos from an index by id")
    p.add_argument("video_ids", nargs="+")
    p.add_argument("--index", required=True)
    p.set_defaults(func=cmd_remove)


def _add_upgrade(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upgrade", help="convert an index of an older format in place")
    p.add_argument("index")
    p.set_defaults(func=cmd_upgrade)


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="what an index holds")
    p.add_argument("--index", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
