"""Moments of long videos: the policy and its range arithmetic (vtr_core.video.moments), and the
one-pass decoding that cuts real files into moments (vtr_core.video.stream).

The generated videos have planted scene changes: each scene is its own static texture and
colour, with a small bar moving over it, so PySceneDetect sees a cut exactly where a scene
starts and nowhere else. Expected moments come from `shot_ranges` on the planted times.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, write_fast_video, write_video
from vtr_core.errors import VideoError, VtrError
from vtr_core.video import (
    DEFAULT_MOMENTS,
    MomentPolicy,
    read_moments,
    read_video,
    sample_times,
    shot_ranges,
    window_ranges,
)
from vtr_core.video.moments import MomentPlanner
from vtr_core.video.stream import keep_fps

FRAMES = 12
PLANTED = [2.0, 9.0, 13.2, 20.4, 22.4, 31.0, 90.0]  # a short first shot, a 4.2 s one, a short one, a 59 s one
PLANTED_S = 120.0
TWO_HOURS_S = 7200


def write_scenes(path: Path, cuts: list[float], duration_s: float, fps: int = 25, size: tuple[int, int] = (160, 120),
                 faststart: bool = False) -> Path:
    """An H.264 mp4 whose scenes start at `cuts` (seconds): a static block texture and colour per
    scene, a bar moving over it. Frames are made in yuv420p, x264 ultrafast: 2 h at 1 fps in 2 s."""
    import av

    width, height = size
    rng = np.random.default_rng(len(cuts))
    luma = rng.integers(16, 236, (len(cuts) + 1, height // 8, width // 8), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
    chroma = rng.integers(40, 216, (len(cuts) + 1, 2), dtype=np.uint8)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        options = {"preset": "ultrafast", "tune": "zerolatency", "g": "50", "threads": "1"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        planes = np.empty((height * 3 // 2, width), np.uint8)
        for i in range(round(duration_s * fps)):
            scene = int(np.searchsorted(cuts, i / fps + 1e-9, side="right"))
            planes[:height] = luma[scene]
            planes[height : height + height // 4], planes[height + height // 4 :] = chroma[scene]
            x = (i * 3) % (width - 8)
            planes[: height // 4, x : x + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def two_hour_cuts() -> list[float]:
    gaps = np.random.default_rng(1).integers(2, 150, 200)  # some shots shorter than 4 s, some over 48 s
    cuts = np.cumsum(gaps)
    return cuts[cuts < TWO_HOURS_S].astype(float).tolist()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("moments")
    files = {
        "planted": write_scenes(folder / "planted.mp4", PLANTED, PLANTED_S),
        "two_hours": write_scenes(folder / "two_hours.mp4", two_hour_cuts(), TWO_HOURS_S, fps=1),
        "ten_minutes": write_scenes(folder / "ten_minutes.mp4", two_hour_cuts()[:12], 600, fps=1),
        "short": write_video(folder / "short.mp4", num_frames=40, seed=3),
    }
    streamed = write_scenes(folder / "streamed.mp4", [25.0, 50.0], 60, fps=5, faststart=True).read_bytes()
    files["cut_long"] = folder / "cut_long.mp4"
    files["cut_long"].write_bytes(streamed[: len(streamed) * 6 // 10])
    short = write_fast_video(folder / "short_streamed.mp4", 60, fps=10, size=(160, 120), faststart=True).read_bytes()
    files["cut_short"] = folder / "cut_short.mp4"  # the cut_stream.mp4 of test_bad_videos
    files["cut_short"].write_bytes(short[: len(short) * 6 // 10])
    files["no_frames"] = folder / "no_frames.mp4"  # the index (moov) and the first bytes of the data
    files["no_frames"].write_bytes(streamed[: streamed.index(b"mdat") + 64])
    return files


def ranges_of(stream) -> list[tuple[float, float]]:
    return [(m.start_s, m.end_s) for chunk in stream.chunks() for m in chunk]


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shots", MomentPolicy("shots", 32.0, 16.0, 8.0)),
        ("shots:3/32", MomentPolicy("shots", 32.0, 16.0, 3.0)),
        (" Shots:0.5/7.5 ", MomentPolicy("shots", 7.5, 3.75, 0.5)),
        ("shots:0/60", MomentPolicy("shots", 60.0, 30.0, 0.0)),
        ("window:32/16", MomentPolicy("window", 32.0, 16.0, 0.0)),
        ("window:10/10", MomentPolicy("window", 10.0, 10.0)),
        ("window:2.5/0.25", MomentPolicy("window", 2.5, 0.25)),
    ],
)
def test_policy_parses_and_its_spec_parses_back(text, expected):
    policy = MomentPolicy.parse(text)
    assert policy == expected
    assert MomentPolicy.parse(policy.spec) == policy and policy.spec == MomentPolicy.parse(policy.spec).spec
    assert hash(policy) == hash(expected)


def test_default_policy_keeps_every_msrvtt_clip_one_moment():
    policy = MomentPolicy.parse(DEFAULT_MOMENTS)
    assert policy.spec == DEFAULT_MOMENTS and policy.whole_s >= 32
    shots = MomentPolicy.parse("shots")
    assert shots == MomentPolicy() and shots.length_s >= 32 and shots.stride_s == shots.length_s / 2
    assert shot_ranges([3.0, 10.0, 20.0], 30.7, shots) == [(0.0, 30.7)]  # the longest MSR-VTT clip
    assert window_ranges(30.7, MomentPolicy("window", 32.0)) == [(0.0, 30.7)]
    planner = MomentPlanner(policy)
    assert planner.advance(30.7) == [] and planner.finish(30.7) == [(0.0, 30.7)]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "expected shots, shots:MIN/MAX or window:LENGTH/STRIDE"),
        ("scenes", "expected shots"),
        ("window", "expected shots"),  # windows need their numbers
        ("shots:4", "expected shots"),
        ("shots:4/32/16", "expected shots"),
        ("window:a/b", "expected shots"),
        ("window:32/", "expected shots"),
        ("window:16/32", "the stride (32 s) must not exceed the length (16 s)"),
        ("window:0/0", "the length must be a number of seconds more than 0"),
        ("window:-5/2", "the length must be a number of seconds more than 0"),
        ("shots:40/32", "the minimum shot (40 s) must not exceed the longest moment (32 s)"),
        ("shots:nan/32", "the minimum shot must be a number of seconds 0 or more"),
        ("shots:4/inf", "the length must be a number of seconds more than 0"),
    ],
)
def test_bad_policy_is_one_clear_line(text, says):
    with pytest.raises(VtrError) as caught:
        MomentPolicy.parse(text)
    message = str(caught.value)
    assert says in message and "\n" not in message and "--" not in message, message
    assert caught.value.setting == "moments"


def test_policy_built_directly_is_checked_the_same_way():
    assert MomentPolicy("window", 20.0).stride_s == 10.0 and MomentPolicy("window", 20.0).min_shot_s == 0.0
    assert MomentPolicy("shots", 60.0).stride_s == 30.0 and MomentPolicy("shots", 60.0).min_shot_s == 8.0
    for bad in (dict(kind="scenes"), dict(kind="shots", stride_s=3.0), dict(kind="window", min_shot_s=2.0)):
        with pytest.raises(VtrError):
            MomentPolicy(**bad)


# ---------------------------------------------------------------- range arithmetic


@pytest.mark.parametrize(
    ("duration", "spec", "expected"),
    [
        (20.0, "window:32/16", [(0, 20)]),
        (32.0, "window:32/16", [(0, 32)]),
        (33.0, "window:32/16", [(0, 33)]),  # a tail under the stride: the one window stretches
        (48.0, "window:32/16", [(0, 32), (16, 48)]),
        (80.0, "window:32/16", [(0, 32), (16, 48), (32, 64), (48, 80)]),
        (100.0, "window:32/16", [(0, 32), (16, 48), (32, 64), (48, 80), (64, 100)]),
        (35.0, "window:10/10", [(0, 10), (10, 20), (20, 35)]),  # no 5 s window at the end
        (0.0, "window:10/5", [(0, 0)]),
    ],
)
def test_window_ranges_by_hand(duration, spec, expected):
    assert window_ranges(duration, MomentPolicy.parse(spec)) == [(float(a), float(b)) for a, b in expected]


def test_window_ranges_cover_the_video_without_tiny_windows():
    rng = np.random.default_rng(0)
    for _ in range(300):
        length = float(rng.uniform(1, 60))
        policy = MomentPolicy("window", length, float(rng.uniform(0.1, 1.0)) * length)
        duration = float(rng.uniform(0, 10 * length))
        ranges = window_ranges(duration, policy)
        starts = np.array([a for a, _ in ranges])
        assert ranges[0][0] == 0 and ranges[-1][1] == pytest.approx(duration)
        assert np.allclose(np.diff(starts), policy.stride_s)
        lengths = np.array([b - a for a, b in ranges])
        if duration > length:
            assert lengths.min() >= length - 1e-6 and lengths.max() < length + policy.stride_s
        assert all(b_prev >= a_next for (_, b_prev), (a_next, _) in zip(ranges, ranges[1:]))


def test_shot_ranges_by_hand():
    policy = MomentPolicy.parse("shots:4/32")
    # the 2 s first shot joins the next; 4.2 s is long enough; the 2 s shot at 20.4 joins the next
    # one; the 59 s shot is cut into windows; the video ends 30 s after the last cut
    assert shot_ranges(PLANTED, PLANTED_S, policy) == [
        (0.0, 9.0), (9.0, 13.2), (13.2, 20.4), (20.4, 31.0), (31.0, 63.0), (47.0, 90.0), (90.0, 120.0)]
    assert shot_ranges([10.0, 20.0], 31.0, policy) == [(0.0, 31.0)]  # no longer than 32 s: one moment
    assert shot_ranges([], 100.0, policy) == window_ranges(100.0, policy)  # one long shot
    assert shot_ranges([-1.0, 50.0, 50.0, 70.0, 99.0], 100.0, policy) == [(0.0, 32.0), (16.0, 50.0), (50.0, 70.0),
                                                                         (70.0, 100.0)]  # 99: last shot too short
    assert shot_ranges([1.0, 2.0, 3.0, 40.0], 60.0, policy) == [(0.0, 40.0), (40.0, 60.0)]  # short shots in a row
    # a montage of 1 s shots: its first cut is kept, then one cut every 4 s or more
    assert shot_ranges([10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 30.0], 40.0, policy) == [
        (0.0, 10.0), (10.0, 14.0), (14.0, 30.0), (30.0, 40.0)]
    # a cut detected twice (the frame after a scene change blurred by the encoder): the first counts
    assert shot_ranges([12.0, 12.04, 25.0, 25.04], 40.0, policy) == [(0.0, 12.0), (12.0, 25.0), (25.0, 40.0)]
    assert shot_ranges([10.0, 11.0, 40.0], 60.0, MomentPolicy.parse("shots:0/32")) == [
        (0.0, 10.0), (10.0, 11.0), (11.0, 40.0), (40.0, 60.0)]


def test_planner_fed_frame_by_frame_agrees_with_shot_ranges_and_keeps_little():
    """The incremental planner, driven as the decoder drives it (a cut at the start of a frame,
    then the frame's end), gives the batch answer, and what it still needs never reaches back
    more than length + stride + min shot."""
    rng = np.random.default_rng(5)
    step = 0.5
    for case in range(60):
        policy = MomentPolicy.parse(["shots:4/32", "shots:1/10", "shots:0/20", "window:20/5", "window:12/12"][case % 5])
        frame_times = np.arange(int(rng.uniform(5, 400) / step)) * step
        duration = float(frame_times[-1] + step)
        cuts = set()
        if policy.kind == "shots":
            cuts = set(rng.choice(frame_times[1:], int(rng.integers(0, 40))).tolist())
        planner, emitted = MomentPlanner(policy), []
        for t in frame_times.tolist():
            if t in cuts:
                emitted += planner.add_cut(t)
            emitted += planner.advance(t + step)
            # frames kept: all while the video may still be one moment (WHOLE_VIDEO_S), then one moment's worth
            bound = max(policy.whole_s, policy.length_s + policy.stride_s + policy.min_shot_s)
            assert t + step - planner.keep_from <= bound + step
        emitted += planner.finish(duration)
        if duration <= policy.whole_s:
            expected = [(0.0, duration)]
        else:
            expected = shot_ranges(sorted(cuts), duration, policy) if cuts else window_ranges(duration, policy)
        assert len(emitted) == len(expected) and np.allclose(emitted, expected), (policy, emitted, expected)
        assert all(a[0] <= b[0] for a, b in zip(emitted, emitted[1:]))  # time order


def test_kept_frame_rate_serves_the_shortest_moment():
    """1.5x T samples over the shortest moment: 4.5 fps for 12 samples of a 4 s shot, 1 fps for windows."""
    assert keep_fps(MomentPolicy.parse("shots:4/32"), 12) == 4.5
    assert keep_fps(MomentPolicy.parse("window:32/16"), 12) == 1.0
    assert keep_fps(MomentPolicy.parse("shots:4/32"), 12, duration_s=3.0) == 6.0  # a cut-short file: one moment
    assert keep_fps(MomentPolicy.parse("shots:0/32"), 12) == 10.0  # no minimum: capped


def test_sample_times_are_segment_centres():
    np.testing.assert_allclose(sample_times(10.0, 22.0, 4), [11.5, 14.5, 17.5, 20.5])
    np.testing.assert_allclose(sample_times(0.0, 1.0, 1), [0.5])
    assert sample_times(3.0, 3.0, 2).tolist() == [3.0, 3.0] and sample_times(0.0, 1.0, 3).dtype == np.float64
    with pytest.raises(ValueError):
        sample_times(0.0, 1.0, 0)


# ---------------------------------------------------------------- decoding


def check_moment_frames(moments, height=120, width=160):
    for moment in moments:
        assert moment.frames.shape == (FRAMES, height, width, 3) and moment.frames.dtype == np.uint8
        times = moment.timestamps_s
        assert times.dtype == np.float64 and np.all(np.diff(times) >= 0)
        assert moment.start_s - 1e-6 <= times[0] and times[-1] < moment.end_s


def test_shot_cuts_land_on_the_planted_scene_changes(videos):
    stream = read_moments(videos["planted"], "shots:4/32", FRAMES)
    assert stream.streamed and stream.info.duration_s == pytest.approx(PLANTED_S)
    moments = [m for chunk in stream.chunks() for m in chunk]
    expected = shot_ranges(PLANTED, PLANTED_S, MomentPolicy.parse("shots:4/32"))
    assert len(moments) == len(expected), [(m.start_s, m.end_s) for m in moments]
    np.testing.assert_allclose([(m.start_s, m.end_s) for m in moments], expected, atol=2 / 25)  # two frames
    check_moment_frames(moments)
    # T samples of a shot, even of the 4.2 s one, are distinct frames (a bar moves over each scene)
    for moment in moments:
        assert len({frame.tobytes() for frame in moment.frames}) == FRAMES
    assert stream.warning == "" and stream.info.num_source_frames == PLANTED_S * 25


def test_window_mode_needs_no_detector(videos):
    stream = read_moments(videos["planted"], MomentPolicy.parse("window:20/10"), FRAMES)
    moments = [m for chunk in stream.chunks() for m in chunk]
    assert [(m.start_s, m.end_s) for m in moments] == window_ranges(PLANTED_S, MomentPolicy.parse("window:20/10"))
    check_moment_frames(moments)
    assert "scenedetect" not in subprocess.run(
        [sys.executable, "-c", "import sys; from vtr_core.video import read_moments; "
         f"[c for c in read_moments({str(videos['planted'])!r}, 'window:20/10').chunks()]; print(sorted(sys.modules))"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60).stdout


def test_chunks_stream_lazily_within_their_size(videos):
    stream = read_moments(videos["planted"], "window:20/10", FRAMES, chunk_moments=3)
    assert stream.streamed and stream.decoded_s == 0
    chunks = stream.chunks()
    first = next(chunks)
    assert len(first) == 3 and stream.decoded_s < PLANTED_S / 2  # the rest is not decoded yet
    rest = list(chunks)
    sizes = [len(first)] + [len(chunk) for chunk in rest]
    assert all(0 < size <= 3 for size in sizes)
    assert sum(sizes) == len(window_ranges(PLANTED_S, MomentPolicy("window", 20.0)))
    assert stream.decoded_s == pytest.approx(PLANTED_S)
    again = read_moments(videos["planted"], "window:20/10", FRAMES, chunk_moments=100)
    assert [len(chunk) for chunk in again.chunks()] == [sum(sizes)]


def test_short_video_is_read_video_exactly(videos):
    sampled = read_video(videos["short"], FRAMES)
    for policy in ("shots", "window:32/16", "shots:1/4"):  # 4 s: one moment under every policy
        stream = read_moments(videos["short"], policy, FRAMES)
        assert not stream.streamed and stream.warning == ""
        chunks = list(stream.chunks())
        assert len(chunks) == 1 and len(chunks[0]) == 1
        moment = chunks[0][0]
        assert (moment.start_s, moment.end_s) == (0.0, sampled.duration_s)
        np.testing.assert_array_equal(moment.frames, sampled.frames)
        np.testing.assert_array_equal(moment.timestamps_s, sampled.timestamps_s)
        info = stream.info
        assert (info.path, info.duration_s, info.fps, info.num_source_frames, info.width, info.height) == (
            sampled.path, sampled.duration_s, sampled.fps, sampled.num_source_frames, sampled.width, sampled.height)


MEASURE = """
import json, resource, sys
from vtr_core.video import read_moments
stream = read_moments(sys.argv[1], sys.argv[2], 12, chunk_moments=8)
ranges, largest = [], 0
for chunk in stream.chunks():
    ranges += [(m.start_s, m.end_s) for m in chunk]
    largest = max(largest, len(chunk))
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_kb": peak_kb, "ranges": ranges, "largest": largest, "duration": stream.info.duration_s,
                  "frames": stream.info.num_source_frames, "warning": stream.warning}))
"""


def measure(path: Path, policy: str) -> dict:
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path), policy], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)
    return json.loads(result.stdout)


TWO_HOUR_SHOTS = "shots:4/32"  # the shots of the planted two-hour file are 4 s and more


def test_two_hour_video_in_one_pass_with_bounded_memory(videos):
    """7,200 frames (2 h at 1 fps): the moments planted, and peak memory as for a ten-minute file.
    Keeping every frame would add 400 MB (58 kB each); every moment's frames, 300 MB."""
    long, short = measure(videos["two_hours"], TWO_HOUR_SHOTS), measure(videos["ten_minutes"], TWO_HOUR_SHOTS)
    assert long["duration"] == TWO_HOURS_S and long["frames"] == TWO_HOURS_S and long["warning"] == ""
    expected = shot_ranges(two_hour_cuts(), TWO_HOURS_S, MomentPolicy.parse(TWO_HOUR_SHOTS))
    assert len(expected) > 300 and long["largest"] == 8
    np.testing.assert_allclose(long["ranges"], expected, atol=1e-6)
    ratio = long["peak_kb"] / short["peak_kb"]
    assert ratio < 1.15, (long["peak_kb"], short["peak_kb"])


def test_file_cut_short_while_streamed_yields_moments_up_to_the_cut(videos):
    stream = read_moments(videos["cut_long"], "window:20/10", FRAMES)
    assert stream.streamed and stream.info.duration_s == pytest.approx(60)  # what the headers say
    moments = [m for chunk in stream.chunks() for m in chunk]
    decoded = stream.info.duration_s
    assert 20 < decoded < 50 and stream.info.num_source_frames == round(decoded * 5)
    assert [(m.start_s, m.end_s) for m in moments] == window_ranges(decoded, MomentPolicy("window", 20.0))
    check_moment_frames(moments)
    pattern = rf"{re.escape(str(videos['cut_long']))}: cut short: decoded 0:(\d\d) of 1:00 \((\d+) s missing\)"
    match = re.fullmatch(pattern, stream.warning)
    assert match and int(match[1]) == round(decoded) and int(match[2]) == round(60 - decoded), stream.warning
    # shots: the planted cut at 25 s is found before the file ends
    shots = read_moments(videos["cut_long"], "shots:4/20", FRAMES)
    assert [round(a, 1) for a, _ in ranges_of(shots)][:2] == [0.0, 25.0] and shots.warning == stream.warning


def test_short_file_cut_short_is_one_moment_with_a_warning(videos):
    path = videos["cut_short"]
    with pytest.raises(VideoError, match="truncated or corrupt video"):
        read_video(path)  # decord refuses it; read_video is unchanged
    stream = read_moments(path, DEFAULT_MOMENTS, FRAMES)
    moments = ranges_of(stream)
    assert moments == [(0.0, pytest.approx(stream.info.duration_s))] and 1 < stream.info.duration_s < 6
    assert stream.warning == f"{path}: cut short: decoded 0:03 of 0:06 ({6 - stream.info.duration_s:.1f} s missing)"


def test_damage_in_the_middle_is_skipped_with_one_line(videos, tmp_path):
    """Garbage over part of the data: the packets that fail are skipped, the decoder resumes at
    the next keyframe, and the moments still reach the end; the warning counts what was lost."""
    data = bytearray(write_scenes(tmp_path / "whole.mp4", [25.0, 50.0], 60, fps=5).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))
    stream = read_moments(tmp_path / "damaged.mp4", "shots:4/20", FRAMES)
    assert [(round(a, 1), round(b, 1)) for a, b in ranges_of(stream)] == [(0.0, 25.0), (25.0, 50.0), (50.0, 60.0)]
    assert stream.info.duration_s == pytest.approx(60) and stream.info.num_source_frames < 300
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'damaged.mp4'))}: damaged: \d+ packets did not decode and were "
                        "skipped", stream.warning), stream.warning


def test_files_that_decode_nothing_stay_errors(videos, tmp_path):
    with pytest.raises(VideoError) as caught:
        read_moments(videos["no_frames"], DEFAULT_MOMENTS)
    assert str(caught.value) == f"{videos['no_frames']}: truncated or corrupt video (no frame decodes)"
    (tmp_path / "text.mp4").write_text("not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name, says in (("text.mp4", "not a readable video"), ("empty.mp4", "empty file (0 bytes)"),
                       ("missing.mp4", "no such file")):
        with pytest.raises(VideoError, match=re.escape(f"{tmp_path / name}: {says}")):
            read_moments(tmp_path / name, "window:10/5")


def test_a_video_up_to_32_s_is_one_moment_whatever_the_policy():
    """Short clips keep their figures: windows of 8 s cut a 40-s video, not a 30-s clip."""
    policy = MomentPolicy.parse("window:8/4")
    assert policy.whole_s == 32.0 and MomentPolicy.parse("window:60/30").whole_s == 60.0

    def planned(duration: float, cuts: list[float], chosen: MomentPolicy) -> list[tuple[float, float]]:
        planner = MomentPlanner(chosen)
        ranges = []
        for cut in cuts:
            ranges += planner.add_cut(cut)
        return ranges + planner.finish(duration)

    assert planned(30.0, [], policy) == [(0.0, 30.0)]
    assert planned(40.0, [], policy) == [(4.0 * k, 4.0 * k + 8.0) for k in range(9)]
    assert planned(30.0, [10.0, 20.0], MomentPolicy.parse("shots:2/8")) == [(0.0, 30.0)]
    assert planned(33.0, [10.0, 20.0], MomentPolicy.parse("shots:2/16")) == [(0.0, 10.0), (10.0, 20.0), (20.0, 33.0)]
