"""Moment search end to end: a two-hour file with a planted scene, indexed into moments through
the CLI at shot boundaries (`--moments shots`), and the scene's time range found by a query (human output,
JSON lines, per-video), then the app's search endpoint on the same index."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.app_server import running_app
from tests.conftest import REPO
from vtr_core.index import VideoIndex
from vtr_core.retrieval.moment_hits import time_range
from vtr_core.video.moments import MomentPolicy

TWO_HOURS_S = 7200
FPS = 1
SIZE = (160, 120)
PLANTED_AT_S, PLANTED_S = 5000, 28  # 1:23:20-1:23:48
FILLER_SCENE_S = 90  # the filler changes scene every 90 s (real shots, long enough to be cut into windows)
PLANTED_CLIP = REPO / "assets" / "videos" / "bbb_02.mp4"
QUERY = "a plump purple cartoon bird stretches and flaps its wings on a tree branch"  # one of bbb_02's captions
FRAMES = 4  # frames per moment: enough for this scene, and a third of the encoding
MOMENTS = "shots"  # shots:8/32: the planted scene's cuts bound a moment


def planted_frames() -> list[np.ndarray]:
    """The demo clip's frames at 1 fps, stretched over PLANTED_S seconds, at the filler's size."""
    import av

    with av.open(str(PLANTED_CLIP)) as container:
        frames = [f.to_ndarray(format="yuv420p", width=SIZE[0], height=SIZE[1]) for f in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, PLANTED_S).round().astype(int)
    return [frames[i] for i in picks]


def filler_frame(second: int, rng: np.random.Generator, scene_levels: np.ndarray) -> np.ndarray:
    """A grey-level scene with soft noise and a drifting bar: nothing any caption describes."""
    width, height = SIZE
    planes = np.full((height * 3 // 2, width), 128, np.uint8)
    level = scene_levels[second // FILLER_SCENE_S]
    luma = level + rng.integers(-6, 7, (height, width))
    x = (second * 3) % (width - 10)
    luma[height // 2 : height // 2 + 6, x : x + 10] = 250 - level // 2
    planes[:height] = np.clip(luma, 0, 255)
    return planes


def write_two_hour_video(path: Path) -> Path:
    """Two hours at 1 fps, 160x120 (x264 ultrafast: seconds to write), the scene planted at PLANTED_AT_S."""
    import av

    rng = np.random.default_rng(0)
    scene_levels = rng.integers(30, 200, TWO_HOURS_S // FILLER_SCENE_S + 1)
    planted = planted_frames()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "g": "60", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for second in range(TWO_HOURS_S):
            inside = PLANTED_AT_S <= second < PLANTED_AT_S + PLANTED_S
            planes = planted[second - PLANTED_AT_S] if inside else filler_frame(second, rng, scene_levels)
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def run(*args: object) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "vtr_core", *map(str, args)], cwd=REPO, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.fixture(scope="module")
def two_hour_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two-hours")
    (root / "videos").mkdir()
    write_two_hour_video(root / "videos" / "two_hours.mp4")
    run("index", root / "videos", "--index", root / "idx", "--backbone", "lite", "--device", "cpu",
        "--frames", FRAMES, "--moments", MOMENTS, "--quiet")
    return root / "idx"


def test_two_hour_file_is_indexed_into_moments_at_its_shots(two_hour_index):
    index = VideoIndex.open(two_hour_index)
    policy = MomentPolicy.parse(MOMENTS)
    assert index.header.moments == policy.spec and index.num_videos == 1
    moments = index.moments
    starts, ends = np.array([m.start_s for m in moments]), np.array([m.end_s for m in moments])
    assert starts[0] == 0 and ends[-1] == pytest.approx(TWO_HOURS_S, abs=1.5)
    # a window is length_s long; the last one of a long shot also takes in a tail shorter than the stride
    assert np.all(np.diff(starts) > 0) and np.all(ends - starts < policy.length_s + policy.stride_s)
    assert np.all(starts[1:] <= ends[:-1] + 1e-6)  # no gap: every second of the file is in a moment
    assert len(moments) >= TWO_HOURS_S / policy.length_s
    for m in moments:  # each moment's frames lie inside its own range
        assert len(m.frame_times_s) == FRAMES and m.start_s <= min(m.frame_times_s) <= max(m.frame_times_s) <= m.end_s
    # the planted scene's cuts were found: a moment starts at the scene and one ends where it ends
    assert np.min(np.abs(starts - PLANTED_AT_S)) <= 1 and np.min(np.abs(ends - (PLANTED_AT_S + PLANTED_S))) <= 1
    info = json.loads(run("info", "--index", two_hour_index, "--json").stdout)
    assert info["moment_policy"] == policy.spec and info["moments"] == len(moments)


def test_query_finds_the_planted_range_in_json_and_human_output(two_hour_index):
    truth = (PLANTED_AT_S, PLANTED_AT_S + PLANTED_S)
    line = json.loads(run("search", QUERY, "--index", two_hour_index, "--method", "meanp", "--top-k", "3",
                          "--json").stdout)
    best = line["results"][0]
    assert best["video_id"] == "two_hours" and iou((best["start"], best["end"]), truth) >= 0.5, line
    assert {"moment", "start", "end"} <= set(best) and isinstance(best["moment"], int)

    human = run("search", QUERY, "--index", two_hour_index, "--method", "meanp", "--top-k", "3").stdout
    first = next(line for line in human.splitlines() if line.strip().startswith("1."))
    found = re.search(r"two_hours (\d+):(\d\d):(\d\d)-(\d+):(\d\d):(\d\d)", first)
    assert found, first
    h1, m1, s1, h2, m2, s2 = map(int, found.groups())
    assert iou((3600 * h1 + 60 * m1 + s1, 3600 * h2 + 60 * m2 + s2), truth) >= 0.5, first

    per_video = json.loads(run("search", QUERY, "--index", two_hour_index, "--method", "meanp", "--top-k", "3",
                               "--per-video", "--json").stdout)
    assert [h["video_id"] for h in per_video["results"]] == ["two_hours"]  # one video: its best moment
    moment = per_video["results"][0]
    assert moment["moment"] == best["moment"] and best["start"] <= moment["start"] <= moment["end"] <= best["end"]
    assert iou((moment["start"], moment["end"]), truth) >= 0.5


def test_the_app_finds_the_planted_range(two_hour_index, tmp_path):
    """The explorer on the same index: the first card and row are the planted range (gradio_client)."""
    from gradio_client import Client

    with running_app(tmp_path, "--index", str(two_hour_index)) as (url, _):
        gallery, hits, *_ = Client(url, verbose=False).predict(QUERY, "meanp", "none", 5, api_name="/search")
    rows = hits["data"] if isinstance(hits, dict) else hits
    rank, video_id, start, end = rows[0][:4]
    assert (rank, video_id) == (1, "two_hours") and iou((start, end), (PLANTED_AT_S, PLANTED_AT_S + PLANTED_S)) >= 0.5
    assert f"two_hours {time_range(start, end)}" in gallery[0]["caption"]
