"""Sharded index builds: several processes (GPUs, machines) index one folder together under torchrun.

Every rank scans the whole folder and plans it against the main index (file metadata only, the same
plan everywhere, so video ids are those a one-process run would choose), then decodes and encodes
only its share of the new and changed files, those whose path relative to the folder hashes to
its rank (`shard_of`), into a shard index of its own, <index>/.shards/rank-<k>-of-<world>. A
shard's records keep paths relative to the main index, so nothing is rewritten when it joins it.
After a barrier, rank 0 adopts every shard into the main index in one commit (segments hard-linked,
catalogue rows added: no feature is copied or re-encoded), records the mtimes of touched files,
prunes, and removes the shards; a last barrier returns the other ranks only once the merged index
is visible. One process (WORLD_SIZE 1) takes the plain path, `index_folder`, unchanged.

Limits: the index folder must be on a file system every rank sees (one machine, or a shared mount);
work reaches the main index at the merge only, so a run killed before it loses its shards (the
next run discards and rebuilds them); the folder should not change during a run, since each rank
scans it; pruning is done by rank 0 at the merge; a rank that fails ends the job (torchrun stops
the others) and leaves the main index as it was. The design notes: docs/DESIGN.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from vtr_core.backbones import Backbone
from vtr_core.index import IndexHeader, VideoIndex, VideoRecord
from vtr_core.indexing.indexer import IndexReport, index_folder, index_header, moment_setting
from vtr_core.indexing.scan import plan_index, scan_videos
from vtr_core.indexing.workers import default_decode_workers

SHARDS_DIR = ".shards"  # inside the main index: the same file system, so segments hard-link
REPORT_FILE = "report.json"  # a rank's report, beside its shard, read by rank 0 at the merge
# ranks wait for the slowest rank's share at the second barrier: hours, not the default 30 minutes
BARRIER_TIMEOUT = timedelta(hours=24)


def shard_of(path: str, world: int) -> int:
    """The rank that indexes `path` (relative to the scanned folder, posix): sha1 of the path modulo
    `world`, the same in every process and run (Python's own `hash` of a str is randomised)."""
    digest = hashlib.sha1(path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % world


def shard_dir(index_dir: str | os.PathLike, rank: int, world: int) -> Path:
    """Where rank `rank` of `world` builds its shard of the index at `index_dir`."""
    return Path(index_dir) / SHARDS_DIR / f"rank-{rank}-of-{world}"


def index_folder_sharded(
    video_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    backbone: Backbone,
    rank: int,
    world: int,
    barrier: Callable[[], None],
    num_frames: int = 12,
    store_patches: bool = True,
    faiss_factory: str = "auto",
    prune: bool = False,
    confine_to: Sequence[str | os.PathLike] | None = None,
    moments: str | None = None,
    **index_kwargs,
) -> IndexReport:
    """This rank's share of `index_folder`, then (rank 0) the merge of every shard into the index.

    Every rank of the job calls it with the same arguments but its own `rank`; `barrier` returns
    once all `world` ranks have called it. The other settings (`commit_every`, `batch_frames`,
    `decode_workers`, `progress`, ...) go to `index_folder`. A rank other than 0 returns the report
    of its share; rank 0 returns the whole run's: every rank's work, the merge and the pruning.
    """
    started = time.perf_counter()
    header = index_header(backbone, num_frames, store_patches, faiss_factory, moment_setting(index_dir, moments))
    shard = shard_dir(index_dir, rank, world)
    if rank == 0:  # create (or convert, or check) the main index before a shard folder appears in it
        with VideoIndex.writer(index_dir, header):
            pass
    barrier()
    shutil.rmtree(shard, ignore_errors=True)  # a killed run's shard: its work was never merged
    report = index_folder(video_dir, shard, backbone, num_frames=num_frames, store_patches=store_patches,
                          faiss_factory=faiss_factory, confine_to=confine_to,
                          select=lambda path: shard_of(path, world) == rank, plan_against=index_dir,
                          moments=header.moments or None, **index_kwargs)
    report.index_dir = str(index_dir)
    (shard / REPORT_FILE).write_text(json.dumps(asdict(report)))
    barrier()
    try:
        if rank == 0:
            report = merge_shards(video_dir, index_dir, header, world, prune, confine_to)
            report.seconds = time.perf_counter() - started
    finally:
        barrier()  # a failed merge raises on rank 0 alone: the others return instead of waiting for it
    return report


def merge_shards(video_dir: str | os.PathLike, index_dir: str | os.PathLike, header: IndexHeader, world: int,
                 prune: bool = False, confine_to: Sequence[str | os.PathLike] | None = None) -> IndexReport:
    """Adopt the shards of all `world` ranks into the main index in one commit, then remove them.

    One commit: readers see the index before the run or after it, never a part of the run. Files
    whose mtime changed but not their content were not re-encoded; their new mtimes, recorded by
    the ranks in their reports, are written here. Returns the run's report, every rank's summed.
    """
    folders = [shard_dir(index_dir, rank, world) for rank in range(world)]
    report = summed_reports(str(index_dir), [read_report(folder / REPORT_FILE) for folder in folders])
    shards = [VideoIndex.open(folder) for folder in folders]
    with VideoIndex.writer(index_dir, header) as writer:
        for shard in shards:
            if shard.num_videos:  # an empty shard would commit a generation that changes nothing
                writer.adopt(shard)
        for video_id, mtime_ns in report.touched.items():
            writer.touch(video_id, mtime_ns)
        if prune:
            report.removed = gone_videos(video_dir, writer.videos, index_dir, confine_to)
            for video_id in report.removed:
                writer.remove(video_id)
        writer.commit()
    for shard in shards:
        shard.catalogue.close()
    shutil.rmtree(Path(index_dir) / SHARDS_DIR, ignore_errors=True)  # also shards of another world size
    return report


def gone_videos(video_dir: str | os.PathLike, indexed: list[VideoRecord], index_dir: str | os.PathLike,
                confine_to: Sequence[str | os.PathLike] | None) -> list[str]:
    """Indexed videos under `video_dir` whose files are gone (a rescan: metadata only)."""
    root = Path(video_dir)
    return plan_index(root, scan_videos(root), indexed, Path(index_dir).resolve(), confine_to, prune=True).removed


def read_report(path: Path) -> IndexReport:
    """A rank's report as it wrote it (JSON turns the failed (path, reason) pairs into lists)."""
    fields = json.loads(path.read_text())
    fields["failed"] = [tuple(pair) for pair in fields["failed"]]
    return IndexReport(**fields)


def summed_reports(index_dir: str, reports: list[IndexReport]) -> IndexReport:
    """One report for the ranks' shares: lists joined, counts and stage times summed over ranks
    (the wall time is set by the caller); the decode settings are rank 0's."""
    total = IndexReport(index_dir=index_dir, decode_workers=reports[0].decode_workers,
                        decode_processes=reports[0].decode_processes)
    for part in reports:
        for name in ("added", "updated", "removed", "failed", "aliases"):
            getattr(total, name).extend(getattr(part, name))
        for name in ("unchanged", "frames_encoded", "wait_s", "encode_s", "store_s"):
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.touched.update(part.touched)
    return total


# -- joining a torchrun job ------------------------------------------------------------------------
def torchrun_world() -> int:
    """How many processes the torchrun job that started this one has (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class TorchrunJob:
    """This process's place in a torchrun job, and the device it encodes on."""

    rank: int
    world: int
    local_rank: int
    local_world: int  # ranks on this machine, sharing its cores
    device: str  # "cuda:<LOCAL_RANK>" when it encodes on a GPU (torchrun_job), else the device asked for

    def decode_workers(self) -> int:
        """This rank's share of the machine's cores for decoding (one process alone takes them all)."""
        return min(default_decode_workers(), max(1, (os.cpu_count() or 2) // self.local_world))

    def barrier(self) -> None:
        """Wait until every rank of the job gets here."""
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


@contextmanager
def torchrun_job(device: str = "auto") -> Iterator[TorchrunJob]:
    """Join the torchrun job (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from the
    environment) for the block, and leave it after. With `device` auto or cuda and CUDA present,
    the rank encodes on GPU number LOCAL_RANK (modulo the GPUs there). The ranks only wait for each
    other, so the backend matters little: nccl when every rank on the machine has a GPU of its own,
    gloo otherwise (CPU, a device named by the caller, or more ranks than GPUs: nccl refuses those)."""
    local_rank, local_world = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    gpu = device in ("auto", "cuda") and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = f"cuda:{torch.cuda.current_device()}"
    own_gpu = gpu and local_world <= torch.cuda.device_count()
    dist.init_process_group("nccl" if own_gpu else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield TorchrunJob(dist.get_rank(), dist.get_world_size(), local_rank, local_world, device)
    finally:
        dist.destroy_process_group()
