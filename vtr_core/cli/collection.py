"""The collection commands: index (or update) a folder of videos, search it, describe it, remove from it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vtr_core.cli.progress import progress_bar
from vtr_core.contracts import check_settings, open_with_backbone
from vtr_core.errors import VtrError

if TYPE_CHECKING:
    from vtr_core.indexing.sharded import TorchrunJob


def cmd_index(args: argparse.Namespace) -> int:
    """Index a folder; started by torchrun with several processes, each indexes a shard (merged by rank 0)."""
    from vtr_core.indexing import torchrun_job, torchrun_world

    if torchrun_world() == 1:
        return _index(args, None)
    with torchrun_job(args.device) as job:
        return _index(args, job)


def _index(args: argparse.Namespace, job: TorchrunJob | None) -> int:
    """The index command in one process (`job` None) or as one rank of a torchrun job (a TorchrunJob)."""
    from vtr_core.backbones import create_backbone
    from vtr_core.index import FORMAT_VERSION, VideoIndex, upgrade_index
    from vtr_core.indexing import index_folder, index_folder_sharded
    from vtr_core.video.moments import MomentPolicy

    lead = job is None or job.rank == 0  # the one process that reports
    device = job.device if job else args.device
    frames, store_patches, faiss_factory = args.frames or 12, not args.no_patches, args.faiss or "auto"
    if lead and upgrade_index(args.index):
        print(f"converted {args.index} to index format {FORMAT_VERSION}", file=sys.stderr)
    if job:
        job.barrier()  # the other ranks read the index once it is converted
    if VideoIndex.exists(args.index):
        check_settings(VideoIndex.open(args.index).header, f"index {args.index}", num_frames=args.frames,
                       faiss_factory=args.faiss, moment_spec=args.moments and MomentPolicy.parse(args.moments).spec)
        # immediate: before the backbone loads
        index, backbone = open_with_backbone(args.index, args.backbone, device)
        frames = args.frames or index.header.num_frames
        store_patches = index.header.store_patches and not args.no_patches
        faiss_factory = args.faiss or index.header.faiss_factory
    else:
        backbone = create_backbone(args.backbone, device)
    if lead:
        shards = f"; {job.world} processes, one shard each" if job else ""
        print(f"backbone: {backbone.spec} ({backbone.id}) on {backbone.device}{shards}", file=sys.stderr)
    settings = {"num_frames": frames, "store_patches": store_patches, "faiss_factory": faiss_factory,
                "moments": args.moments, "prune": args.prune, "batch_frames": args.batch_frames,
                "decode_workers": args.workers or (job.decode_workers() if job else None),  # ranks share the cores
                "progress": None if args.quiet or not lead else progress_bar("indexing")}
    if job:
        report = index_folder_sharded(args.video_dir, args.index, backbone, job.rank, job.world, job.barrier,
                                      **settings)
    else:
        report = index_folder(args.video_dir, args.index, backbone, **settings)
    if not lead:  # rank 0's report holds every rank's work
        return 1 if report.failed else 0
    for path, reason in report.failed:
        print(f"skipped: {reason}", file=sys.stderr)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(report.summary())
    if args.report:
        fields = report.__dict__ | {"videos_per_second": report.videos_per_second}
        Path(args.report).write_text(json.dumps(fields, indent=1))
    return 1 if report.failed else 0


def _queries(args: argparse.Namespace) -> list[str]:
    """The one query given, or the non-empty lines of --queries FILE."""
    if (args.query is None) == (args.queries is None):
        raise VtrError("give one query, or --queries FILE with one query per line")
    if not args.queries:
        return [args.query]
    try:
        lines = [line.strip() for line in Path(args.queries).read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise VtrError(f"{args.queries}: cannot read queries ({exc})") from None
    return [q for q in lines if q]


def cmd_search(args: argparse.Namespace) -> int:
    from vtr_core.methods import best_shipped_method, read_checkpoint, resolve_head
    from vtr_core.retrieval.moment_hits import time_range
    from vtr_core.retrieval.search import Searcher

    queries = _queries(args)
    index, backbone = open_with_backbone(args.index, args.backbone, args.device)
    # a checkpoint names its own method; without one, the shipped head with the best validation score
    method = args.method or (read_checkpoint(args.checkpoint)["method"] if args.checkpoint else best_shipped_method(backbone))
    head, source = resolve_head(method, backbone, args.checkpoint, args.zero_shot,
                                num_frames=index.header.num_frames)
    if not args.json:
        print(f"backbone: {backbone.spec} on {backbone.device}; "
              f"index: {index.num_videos} videos, {len(index)} moments; "
              f"method: {method} ({source})", file=sys.stderr)
    results = Searcher(index, backbone, head).search(queries, top_k=args.top_k, rerank_top_k=args.rerank_top_k,
                                                     per_video=args.per_video, merge=not args.no_merge)
    for query, hits in zip(queries, results):
        if args.json:
            print(json.dumps({"query": query, "results": [h.to_dict() for h in hits]}, ensure_ascii=False))
        else:
            print(f"\n{query}")
            for hit in hits:
                moved = f"  (stage 1: #{hit.coarse_rank})" if hit.reranked else ""
                print(f"  {hit.rank:3d}. {hit.score:7.4f}  {hit.video_id} {time_range(hit.start_s, hit.end_s)}  "
                      f"{hit.path}{moved}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from vtr_core.indexing import remove_videos

    removed = remove_videos(args.index, args.video_ids)
    print(f"removed {len(removed)} videos from {args.index}")
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from vtr_core.index import FORMAT_VERSION, VideoIndex, upgrade_index

    converted = upgrade_index(args.index)
    if not converted and not VideoIndex.exists(args.index):
        raise VtrError(f"{args.index} holds no index to upgrade")
    print(f"{args.index}: {'converted to' if converted else 'already'} index format {FORMAT_VERSION}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from vtr_core.index import VideoIndex

    info = VideoIndex.open(args.index).describe()
    print(json.dumps(info, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0
