"""Overlapping moments share frames, and each shared frame is encoded once (indexing/encoding.py).

window:12/6 at 12 frames a moment samples every second of a long video twice; encoding each
distinct frame once halves the encoder's work with nothing changed in what is stored.
"""

from __future__ import annotations

import numpy as np
import torch

from tests.conftest import write_fast_video
from vtr_core.indexing.encoding import distinct_frames, encode_moments
from vtr_core.indexing.indexer import index_header
from vtr_core.video import read_moments
from vtr_core.video.moments import MomentFrames


def frames_of(*levels: int) -> np.ndarray:
    return np.stack([np.full((4, 6, 3), level, np.uint8) for level in levels])


def test_distinct_frames_by_timestamp_and_pixels():
    first = MomentFrames(0.0, 3.0, frames_of(1, 2, 3), np.array([0.5, 1.5, 2.5]))
    overlapping = MomentFrames(1.0, 4.0, frames_of(2, 3, 4), np.array([1.5, 2.5, 3.5]))
    # another video: the same times, other pixels (never merged), and one frame equal to a frame
    # of the first at another time (not merged either: only frames at the same time are compared)
    other_video = MomentFrames(0.0, 3.0, frames_of(9, 9, 1), np.array([0.5, 1.5, 2.5]))
    distinct, rows = distinct_frames([first, overlapping, other_video])
    assert rows.tolist() == [0, 1, 2, 1, 2, 3, 4, 5, 6]
    assert [int(frame[0, 0, 0]) for frame in distinct] == [1, 2, 3, 4, 9, 9, 1]


class CountingBackbone:
    """The real lite backbone, counting the frames it is asked to encode."""

    def __init__(self, backbone):
        self.backbone, self.frames_encoded = backbone, 0

    def __getattr__(self, name):
        return getattr(self.backbone, name)

    def encode_frames(self, frames, patch_dtype=torch.float32):
        self.frames_encoded += len(frames)
        return self.backbone.encode_frames(frames, patch_dtype=patch_dtype)


def test_overlapping_windows_are_encoded_once_with_the_same_features(lite_backbone, tmp_path):
    video = write_fast_video(tmp_path / "long.mp4", num_frames=60 * 4, fps=4, size=(96, 64))  # 60 s
    moments = list(read_moments(video, "window:12/6", num_frames=12).moments())
    assert len(moments) == 9 and moments[1].start_s == 6.0
    header = index_header(lite_backbone, num_frames=12, store_patches=True, faiss_factory="Flat")
    counting = CountingBackbone(lite_backbone)
    stored = encode_moments(counting, moments, [b""] * len(moments), header)
    unique_times = {float(t) for m in moments for t in m.timestamps_s}
    assert counting.frames_encoded == len(unique_times) <= 12 * len(moments) * 0.6
    # what encoding each moment by itself stores (batches of other sizes: float32 rounding apart)
    for moment, features in zip(moments, stored):
        alone = lite_backbone.encode_frames(moment.frames, patch_dtype=torch.float16)
        np.testing.assert_allclose(features.frames, alone.frame.numpy(), atol=1e-5)
        np.testing.assert_allclose(features.patches.astype(np.float32), alone.patches.float().numpy(), atol=1e-3)
        np.testing.assert_allclose(features.raw, alone.raw.numpy(), rtol=1e-4, atol=1e-5)
        assert features.frame_times_s == [round(float(t), 3) for t in moment.timestamps_s]
