import os

import numpy as np
import pytest

from tests.conftest import write_video
from vtr_core.errors import VideoError
from vtr_core.video import (
    frame_strip,
    is_video_path,
    read_video,
    split_strip,
    uniform_frame_indices,
)


def test_uniform_indices_are_segment_centres():
    assert uniform_frame_indices(120, 12).tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95, 105, 115]
    assert uniform_frame_indices(10, 4).tolist() == [1, 3, 6, 8]


def test_short_clip_repeats_frames():
    assert uniform_frame_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    assert uniform_frame_indices(1, 12).tolist() == [0] * 12


def test_read_video_samples_frames_and_times(video_file):
    sampled = read_video(video_file, num_frames=6)
    assert sampled.frames.shape == (6, 120, 160, 3) and sampled.frames.dtype == np.uint8
    assert sampled.num_source_frames == 30
    assert sampled.fps == pytest.approx(10.0)
    assert sampled.duration_s == pytest.approx(3.0, abs=0.11)
    # frames 2, 7, 12, ... at 10 fps
    np.testing.assert_allclose(sampled.timestamps_s, [0.2, 0.7, 1.2, 1.7, 2.2, 2.7], atol=1e-3)
    assert len({frame.tobytes() for frame in sampled.frames}) == 6


def test_clip_shorter_than_t_frames(tmp_path):
    sampled = read_video(write_video(tmp_path / "one.mp4", num_frames=1), num_frames=12)
    assert sampled.frames.shape[0] == 12 and sampled.num_source_frames == 1
    assert all((f == sampled.frames[0]).all() for f in sampled.frames)


def test_odd_resolution(tmp_path):
    sampled = read_video(write_video(tmp_path / "odd.mp4", size=(162, 98)), num_frames=4)
    assert sampled.frames.shape == (4, 98, 162, 3) and (sampled.width, sampled.height) == (162, 98)


def test_large_frames_are_decoded_smaller(tmp_path):
    sampled = read_video(write_video(tmp_path / "big.mp4", num_frames=3, size=(1280, 720)), num_frames=2)
    assert (sampled.width, sampled.height) == (1280, 720)
    assert min(sampled.frames.shape[1:3]) == 256


def test_mpeg4_in_avi(tmp_path):
    sampled = read_video(write_video(tmp_path / "clip.avi", codec="mpeg4"), num_frames=5)
    assert sampled.frames.shape[0] == 5


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("not a video at all"), "not a readable video"),
        (lambda p: p.write_bytes(os.urandom(5000)), "not a readable video"),
    ],
)
def test_bad_files_are_rejected_with_one_line(tmp_path, make, message):
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(VideoError) as info:
        read_video(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_video_is_rejected(tmp_path, video_file):
    data = video_file.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated.mp4"):
        read_video(truncated)


def test_missing_and_directory(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        read_video(tmp_path / "absent.mp4")
    with pytest.raises(VideoError, match="not a regular file"):
        read_video(tmp_path)


def test_frame_strip_round_trip(video_file):
    sampled = read_video(video_file, num_frames=4)
    strip = frame_strip(sampled.frames, height=60)
    assert strip.size == (4 * 80, 60)
    tiles = split_strip(strip, 4)
    assert [t.size for t in tiles] == [(80, 60)] * 4


def test_video_extensions():
    assert is_video_path("a/b.MP4") and is_video_path("x.webm")
    assert not is_video_path("notes.txt") and not is_video_path("video")
