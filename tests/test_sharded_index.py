"""Sharded builds: two torchrun processes (gloo, CPU) build the index that one process builds.

The CLI runs as a user runs it (`torchrun --standalone --nproc_per_node 2 -m vtr_core index ...`);
the updates after it run `index_folder_sharded` in two threads of this process, with a thread
barrier, so they reuse the session's backbone instead of building one per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, write_video
from vtr_core.index import VideoIndex
from vtr_core.indexing.indexer import IndexReport, index_folder
from vtr_core.indexing.sharded import SHARDS_DIR, index_folder_sharded, shard_of

FRAMES = 2
RECORD_FIELDS = ("size", "mtime_ns", "sha256", "duration_s", "fps", "num_source_frames", "width", "height")


@pytest.fixture
def eight_videos(tmp_path: Path) -> Path:
    """Eight small clips, two in a subfolder; `nested/clip0` shares a stem with `clip0`, which the
    other rank indexes, so its id depends on a file it never reads: ids must be chosen as one
    process chooses them."""
    folder = tmp_path / "videos"
    (folder / "nested").mkdir(parents=True)
    names = [f"clip{i}.mp4" for i in range(6)] + ["nested/clip0.mp4", "nested/extra.mp4"]
    for i, name in enumerate(names):
        write_video(folder / name, num_frames=8 + i, size=(64, 48), seed=i)
    return folder


def relative_names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.mp4"))


def assert_same_index(one: VideoIndex, sharded: VideoIndex, folder: Path) -> None:
    """Same videos, records, paths to the real files, and features (frames within float16 storage)."""
    ids = sorted(v.video_id for v in one.videos)
    assert sorted(v.video_id for v in sharded.videos) == ids
    files = {str(p.resolve()) for p in folder.rglob("*.mp4")}
    for video_id in ids:
        a, b = one.row_of(video_id), sharded.row_of(video_id)
        for name in RECORD_FIELDS:
            assert getattr(one.video(video_id), name) == getattr(sharded.video(video_id), name), (video_id, name)
        assert one.video_path(a) == sharded.video_path(b) and sharded.video_path(b) in files
        assert one.moments[a].frame_times_s == sharded.moments[b].frame_times_s
        np.testing.assert_allclose(one.frame_features([a]), sharded.frame_features([b]), atol=2e-3)
        np.testing.assert_allclose(one.coarse_vectors([a]), sharded.coarse_vectors([b]), atol=1e-5)
        # raw features exceed 1: a float16 step there is over 1e-3, so these are compared relatively too
        np.testing.assert_allclose(one.raw_features([a]), sharded.raw_features([b]), rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(one.patch_tokens([a]), sharded.patch_tokens([b]), rtol=2e-3, atol=2e-3)
        assert one.frame_strip_jpeg(a) == sharded.frame_strip_jpeg(b)


def run_in_threads(folder: Path, index_dir: Path, backbone, world: int = 2, **settings) -> list[IndexReport]:
    """`index_folder_sharded` as `world` ranks in threads of this process, joined by a thread barrier."""
    waiting = threading.Barrier(world, timeout=120)

    def rank(k: int) -> IndexReport:
        try:
            return index_folder_sharded(folder, index_dir, backbone, k, world, waiting.wait, num_frames=FRAMES,
                                        decode_workers=1, **settings)
        except BaseException:
            waiting.abort()  # the other ranks stop waiting instead of timing out
            raise

    with ThreadPoolExecutor(world) as pool:
        return [future.result() for future in [pool.submit(rank, k) for k in range(world)]]


def test_shard_of_is_stable_balanced_and_total():
    names = [f"folder{i % 7}/clip {i}.mp4" for i in range(1000)]
    here = [shard_of(name, 4) for name in names]
    script = ("import json, sys; from vtr_core.indexing.sharded import shard_of; "
              "print(json.dumps([shard_of(n, 4) for n in json.loads(sys.stdin.read())]))")
    for seed in ("1", "2"):  # str hashing differs between these processes; shard_of must not
        there = subprocess.run([sys.executable, "-c", script], input=json.dumps(names), capture_output=True,
                               text=True, cwd=REPO, check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(there.stdout) == here
    assert shard_of("clip0.mp4", 1000) == 745  # sha1 is pinned: the same split in every version
    assert all(180 <= count <= 320 for count in Counter(here).values()) and set(here) == {0, 1, 2, 3}
    assert all(shard_of(name, 1) == 0 for name in names)


def test_torchrun_build_equals_one_process_and_updates_stay_equal(tmp_path, eight_videos, lite_backbone):
    shares = Counter(shard_of(name, 2) for name in relative_names(eight_videos))
    assert shares[0] and shares[1], "both ranks must get files, or the test shows nothing"
    assert shard_of("clip0.mp4", 2) != shard_of("nested/clip0.mp4", 2)
    one_dir, sharded_dir, report_path = tmp_path / "one", tmp_path / "sharded", tmp_path / "report.json"
    one = index_folder(eight_videos, one_dir, lite_backbone, num_frames=FRAMES)
    assert len(one.added) == 8 and not one.failed and "nested/clip0" in one.added

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "vtr_core", "index", str(eight_videos), "--index", str(sharded_dir), "--backbone", "lite",
               "--device", "cpu", "--frames", str(FRAMES), "--quiet", "--report", str(report_path)]
    done = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("indexed 8 new") == 1, done.stdout  # rank 0 alone prints, the whole run's summary
    report = json.loads(report_path.read_text())
    assert sorted(report["added"]) == sorted(one.added) and report["frames_encoded"] == 8 * FRAMES
    assert not (sharded_dir / SHARDS_DIR).exists()
    assert_same_index(VideoIndex.open(one_dir), VideoIndex.open(sharded_dir), eight_videos)

    # a second sharded run over the same folder: nothing encoded, nothing committed
    generation = VideoIndex.open(sharded_dir).generation
    first, second = run_in_threads(eight_videos, sharded_dir, lite_backbone)
    assert first.added == first.updated == [] and first.unchanged == 8 and first.frames_encoded == 0
    assert second.unchanged == shares[1]  # rank 1's report: its own share only
    assert VideoIndex.open(sharded_dir).generation == generation and not (sharded_dir / SHARDS_DIR).exists()

    # a changed file, a touched one, a new one and a deleted one, pruned: still the one-process index
    write_video(eight_videos / "clip2.mp4", num_frames=12, size=(64, 48), seed=42)
    os.utime(eight_videos / "clip3.mp4", ns=(1, 1))
    write_video(eight_videos / "nested" / "new.mp4", num_frames=9, size=(64, 48), seed=9)
    (eight_videos / "clip5.mp4").unlink()
    again = index_folder(eight_videos, one_dir, lite_backbone, num_frames=FRAMES, prune=True)
    merged, _ = run_in_threads(eight_videos, sharded_dir, lite_backbone, prune=True)
    for name in ("added", "updated", "removed"):
        assert sorted(getattr(merged, name)) == sorted(getattr(again, name)), name
    assert merged.unchanged == again.unchanged == 6 and merged.touched == again.touched
    assert VideoIndex.open(sharded_dir).video("clip3").mtime_ns == 1
    assert_same_index(VideoIndex.open(one_dir), VideoIndex.open(sharded_dir), eight_videos)
    assert not (sharded_dir / SHARDS_DIR).exists()
