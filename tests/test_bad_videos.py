"""A folder full of bad videos being indexed (issue 7, point 1), through the library and the CLI.

What counts as good: any file with a video extension that decodes as video, whatever its name,
length or frame size. A one-frame clip (its frame repeats 12 times), an 8K clip (decoded at a
reduced size) and a two-hour clip (cut into moments in one pass) are indexed, and so is a file cut
short while streamed, up to the cut, with a one-line warning; an mp4 named .avi or .mov is indexed
too (ffmpeg probes the content, not the name). A video named .txt is not a video path:
the scan ignores it. Everything else with a video extension is skipped with one line naming the
file and the reason, and the CLI exits 1.

Root reads chmod-000 files, so when the tests run as root (CI) the indexing runs with root's
override of file permissions dropped (conftest.set_file_permission_override): in-process around
`index_folder`, and in the CLI's own process before `python -m vtr_core` starts. The permission
check is then real, while the interpreter (perhaps under /root) stays readable.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import (
    REPO,
    set_file_permission_override,
    write_audio_only,
    write_fast_video,
    write_video,
)
from vtr_core.index import VideoIndex
from vtr_core.indexing import index_folder
from vtr_core.video import read_video

FRAMES = 12
EIGHT_K = (7680, 4320)
TWO_HOURS_S = 7200
# the two-hour file changes scene at every frame: shots would make 1,665 moments; 20-minute
# windows keep its encoding to 6 moments (the segmentation itself is tested in test_moments_video)
MOMENTS = "window:1200/1200"

GOOD = {"clip", "really_mp4", "also_mp4", "one_frame", "eight_k", "two_hours", "cut_stream"}
WARNED = {"cut_stream.mp4": "cut short: decoded"}  # index first (faststart), frames cut short: indexed up to the cut
BAD = {  # file name -> what its one line must say
    "empty.mp4": "empty file (0 bytes)",
    "truncated.mp4": "truncated or corrupt video",  # cut before the mp4 index (moov) was written
    "text.mp4": "not a readable video",
    "audio_only.mp4": "no video stream (audio only)",
    "locked.mp4": "permission denied",  # a good video nobody may read
    "loop.mp4": "symbolic link loop",
    "dangling.mp4": "broken symbolic link",
    "pipe.mp4": "not a regular file",  # a FIFO: a decoder reading it would wait forever
}


def build_folder(folder: Path) -> None:
    folder.mkdir()
    write_video(folder / "clip.mp4", num_frames=24, seed=1)
    write_video(folder / "really_mp4.avi", num_frames=20, seed=2)  # mp4 content, other names
    write_video(folder / "also_mp4.mov", num_frames=20, seed=3)
    write_video(folder / "one_frame.mp4", num_frames=1, seed=4)
    write_fast_video(folder / "eight_k.mp4", num_frames=2, size=EIGHT_K)
    write_fast_video(folder / "two_hours.mp4", num_frames=TWO_HOURS_S, fps=1, size=(160, 120))
    write_video(folder / "named.mp4", num_frames=10, seed=5).rename(folder / "video_named.txt")  # not scanned

    (folder / "empty.mp4").write_bytes(b"")
    whole = write_video(folder.parent / "whole.mp4", num_frames=30, seed=6).read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    streamed = write_fast_video(folder.parent / "streamed.mp4", 60, fps=10, size=(160, 120), faststart=True).read_bytes()
    (folder / "cut_stream.mp4").write_bytes(streamed[: len(streamed) * 6 // 10])
    (folder / "text.mp4").write_text("this is not a video\n")
    write_audio_only(folder / "audio_only.mp4")
    write_video(folder / "locked.mp4", num_frames=10, seed=7)
    os.symlink("loop.mp4", folder / "loop.mp4")  # points at itself
    os.symlink("gone.mp4", folder / "dangling.mp4")
    os.mkfifo(folder / "pipe.mp4")
    os.symlink("..", folder / "up")  # a folder link back to the parent: the scan must not follow it
    os.symlink("..", folder / "up.mp4")  # the same, named like a video
    os.symlink("clip.mp4", folder / "alias.mp4")  # a second name for a good file: indexed once
    os.chmod(folder / "locked.mp4", 0)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("bad-videos")
    build_folder(base / "videos")
    return base


@contextmanager
def permissions_apply():
    """File permissions bind this block even when root (see the module docstring)."""
    set_file_permission_override(False)
    try:
        yield
    finally:
        set_file_permission_override(True)


def check_failed_lines(failed: list[tuple[str, str]], folder: Path) -> None:
    by_name = {Path(path).name: reason for path, reason in failed}
    assert len(failed) == len(by_name) and set(by_name) == set(BAD), failed
    for name, reason in by_name.items():
        assert reason.startswith(f"{folder / name}: ") and BAD[name] in reason, (name, reason)
        assert "\n" not in reason and "Traceback" not in reason and len(reason) < len(str(folder)) + 120


def check_warning_lines(warnings: list[str], folder: Path) -> None:
    assert len(warnings) == len(WARNED), warnings
    for line, (name, says) in zip(sorted(warnings), sorted(WARNED.items())):
        assert line.startswith(f"{folder / name}: {says}") and "\n" not in line, line


def test_index_folder_skips_each_bad_file_and_indexes_every_good_one(workspace, lite_backbone):
    folder, index_dir = workspace / "videos", workspace / "idx-library"
    with permissions_apply():
        with pytest.raises(PermissionError), open(folder / "locked.mp4", "rb"):  # the override is off: chmod 000 binds
            pass
        report = index_folder(folder, index_dir, lite_backbone, num_frames=FRAMES, moments=MOMENTS)
        rerun = index_folder(folder, index_dir, lite_backbone, num_frames=FRAMES)
    assert set(report.added) == GOOD and not report.updated
    assert report.aliases == [str(folder / "alias.mp4")] and "1 links to files already indexed" in report.summary()
    check_failed_lines(report.failed, folder)
    check_warning_lines(report.warnings, folder)

    index = VideoIndex.open(index_dir, backbone_id=lite_backbone.id)
    assert {v.video_id for v in index.videos} == GOOD
    assert index.frame_features().shape == (len(GOOD) + 5, FRAMES, lite_backbone.embed_dim)  # two_hours: 6 moments
    assert index.patch_tokens([0]).shape == (1, FRAMES, 49, lite_backbone.embed_dim)
    record = {v.video_id: v for v in index.videos}
    assert (record["eight_k"].width, record["eight_k"].height) == EIGHT_K
    long = record["two_hours"]
    assert long.num_source_frames == TWO_HOURS_S and long.duration_s == pytest.approx(TWO_HOURS_S, abs=1)
    # six 20-minute moments, 12 samples in each: segment centres 50 s, 150 s, ... 7,150 s
    moments = [index.moments[row] for row in index.rows_of("two_hours")]
    assert [(m.start_s, m.end_s) for m in moments] == [(1200.0 * k, 1200.0 * (k + 1)) for k in range(6)]
    np.testing.assert_allclose([t for m in moments for t in m.frame_times_s], (np.arange(6 * FRAMES) + 0.5) * 100, atol=1)
    cut = record["cut_stream"]  # 6 s written, 60% of the bytes kept: about the first 3.5 s decode
    assert 1.0 < cut.duration_s < 5.0 and index.moments[index.row_of("cut_stream")].end_s == cut.duration_s
    one = index.frame_features([index.row_of("one_frame")])[0]
    assert record["one_frame"].num_source_frames == 1 and np.allclose(one, one[0], atol=1e-3)  # one frame, 12 times
    clip = index.frame_features([index.row_of("clip")])[0]
    assert not np.allclose(clip, clip[0], atol=1e-3)  # a real clip's samples differ: the check above can fail
    # clips of different frame sizes were encoded in separate groups of one batch: each video's
    # stored features are those of its own frames, encoded alone
    for video_id in ("clip", "eight_k", "one_frame"):
        alone = lite_backbone.encode_frames(read_video(folder / f"{video_id}.mp4", FRAMES).frames).frame.numpy()
        np.testing.assert_allclose(index.frame_features([index.row_of(video_id)])[0], alone, atol=2e-3)

    # the rerun: good files unchanged (nothing rewritten), bad ones reported again
    assert rerun.added == [] and rerun.updated == [] and rerun.unchanged == len(GOOD) and rerun.warnings == []
    check_failed_lines(rerun.failed, folder)
    assert VideoIndex.open(index_dir).generation == index.generation


# `python -m vtr_core`, in a process that first drops root's override of file permissions
RUN_CLI_UNDER_PERMISSIONS = (
    "import runpy; from tests.conftest import set_file_permission_override; "
    "set_file_permission_override(False); runpy.run_module('vtr_core', run_name='__main__', alter_sys=True)"
)


def run_cli(folder: Path, index_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN_CLI_UNDER_PERMISSIONS, "index", str(folder), "--index", str(index_dir),
         "--backbone", "lite", "--device", "cpu", "--moments", MOMENTS, "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )


def test_cli_prints_one_line_per_bad_file_and_exits_1(workspace):
    folder, index_dir = workspace / "videos", workspace / "idx-cli"
    for run in range(2):  # a fresh index, then the incremental rerun
        result = run_cli(folder, index_dir)
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        skipped = [line.removeprefix("skipped: ") for line in result.stderr.splitlines() if line.startswith("skipped: ")]
        check_failed_lines([(line.split(": ", 1)[0], line) for line in skipped], folder)
        warned = [line.removeprefix("warning: ") for line in result.stderr.splitlines() if line.startswith("warning: ")]
        if run == 0:
            check_warning_lines(warned, folder)
        else:
            assert warned == []  # unchanged on the rerun: nothing decoded, nothing to warn about
        done = f"indexed {len(GOOD)} new" if run == 0 else f"indexed 0 new and 0 changed videos, {len(GOOD)} unchanged"
        assert done in result.stdout and f"{len(BAD)} failed" in result.stdout, result.stdout
    assert {v.video_id for v in VideoIndex.open(index_dir).videos} == GOOD


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_two_hour_video_is_sampled_by_seeking(workspace):
    """Sampling 12 frames costs a fraction of decoding all 7,200 (CPU time, steady on a busy machine)."""
    import decord

    path = str(workspace / "videos" / "two_hours.mp4")
    started = cpu_seconds()
    sampled = read_video(path, FRAMES)
    sampling_s = cpu_seconds() - started
    started = cpu_seconds()
    reader = decord.VideoReader(path, num_threads=1)
    for _ in range(len(reader)):
        reader.next()
    decoding_all_s = cpu_seconds() - started
    assert sampled.num_source_frames == TWO_HOURS_S and sampled.timestamps_s[-1] > 0.9 * TWO_HOURS_S
    assert sampling_s < decoding_all_s / 2, (sampling_s, decoding_all_s)


MEASURE_READ = """
import json, resource, sys
from vtr_core.video import read_video
started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sampled = read_video(sys.argv[1], int(sys.argv[2]))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - started
print(json.dumps({"grown_bytes": grown * 1024, "shape": list(sampled.frames.shape), "size": [sampled.width, sampled.height]}))
"""


def test_8k_video_never_holds_full_size_frames(workspace):
    """Peak memory of sampling 12 frames from 8K stays far below 12 full-size frames (1.2 GB):
    the frame size comes from the headers, and frames are scaled as they are decoded."""
    result = subprocess.run([sys.executable, "-c", MEASURE_READ, str(workspace / "videos" / "eight_k.mp4"), str(FRAMES)],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    measured = json.loads(result.stdout)
    assert measured["size"] == list(EIGHT_K) and measured["shape"] == [FRAMES, 256, 456, 3]
    full_frame = EIGHT_K[0] * EIGHT_K[1] * 3
    # importing the decoders and their own full-size buffers take about 2.4 frames' worth (240 MB);
    # decoding a first frame at full size to learn the size, as before, took 5.4 (530 MB)
    assert measured["grown_bytes"] < 4 * full_frame, measured
