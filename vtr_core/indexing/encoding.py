"""Moments' frames through the backbone: encoded in batches, in the form the index stores.

Overlapping moments of a long video sample many of the same frames (window:12/6 at 12 frames a
moment: every frame but the first and last moments' is in two), and each is encoded once.
Frames of different sizes (a 160x120 clip beside a reduced 8K one) cannot stack into one array,
so clips of each size share one encoder call and the rows are put back in clip order.
"""

from __future__ import annotations

import numpy as np
import torch

from vtr_core.backbones import Backbone
from vtr_core.backbones.base import FrameFeatures
from vtr_core.index import IndexHeader, MomentFeatures
from vtr_core.methods import meanp
from vtr_core.video.moments import MomentFrames


def encode_clips(backbone: Backbone, clips: list[np.ndarray], patch_dtype: torch.dtype = torch.float32) -> FrameFeatures:
    """The frames of several clips [T, H, W, 3], encoded in clip order (rows i*T ... i*T+T-1)."""
    rows_by_size: dict[tuple[int, ...], list[int]] = {}
    for i, clip in enumerate(clips):
        rows_by_size.setdefault(clip.shape[1:], []).append(i)
    parts = [backbone.encode_frames(np.concatenate([clips[i] for i in rows]), patch_dtype=patch_dtype)
             for rows in rows_by_size.values()]
    if len(parts) == 1:
        return parts[0]
    num_frames = clips[0].shape[0]
    position = np.argsort([i for rows in rows_by_size.values() for i in rows])  # clip -> place in the encoded order
    order = torch.as_tensor((position[:, None] * num_frames + np.arange(num_frames)).ravel())

    def joined(name: str) -> torch.Tensor | None:
        tensors = [getattr(part, name) for part in parts]
        return None if tensors[0] is None else torch.cat(tensors)[order]

    return FrameFeatures(frame=joined("frame"), patches=joined("patches"), raw=joined("raw"))


def distinct_frames(moments: list[MomentFrames]) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct frames of these moments, and for each moment's frame (moment-major) its row
    among them. Frames are the same when they have the same timestamp and equal pixels (the
    timestamp only picks which to compare, so frames of different videos are never merged)."""
    distinct: list[np.ndarray] = []
    seen: dict[tuple[float, tuple[int, ...]], list[int]] = {}
    rows = []
    for moment in moments:
        for frame, time_s in zip(moment.frames, moment.timestamps_s):
            candidates = seen.setdefault((float(time_s), frame.shape), [])
            row = next((r for r in candidates if np.array_equal(distinct[r], frame)), None)
            if row is None:
                row = len(distinct)
                distinct.append(frame)
                candidates.append(row)
            rows.append(row)
    return distinct, np.asarray(rows, dtype=np.int64)


def encode_frames_once(backbone: Backbone, moments: list[MomentFrames], patch_dtype: torch.dtype) -> FrameFeatures:
    """Every moment's frames encoded (moment-major rows), each distinct frame once."""
    distinct, rows = distinct_frames(moments)
    if len(distinct) == len(rows):
        return encode_clips(backbone, [m.frames for m in moments], patch_dtype=patch_dtype)
    encoded = encode_clips(backbone, [frame[None] for frame in distinct], patch_dtype=patch_dtype)
    index = torch.from_numpy(rows)
    return FrameFeatures(*(None if part is None else part[index] for part in
                           (encoded.frame, encoded.patches, encoded.raw)))


def encode_moments(backbone: Backbone, moments: list[MomentFrames], strips: list[bytes],
                   header: IndexHeader) -> list[MomentFeatures]:
    """What the index stores for each moment: its frames encoded in one batch (patches and raw
    features as float16, as stored), its mean-pooled coarse vector, its range and frame times."""
    if not moments:
        return []
    encoded = encode_frames_once(backbone, moments, patch_dtype=torch.float16)
    count, num_frames = len(moments), header.num_frames
    frames = encoded.frame.numpy().reshape(count, num_frames, -1)
    patches = encoded.patches.numpy().reshape(count, num_frames, -1, header.embed_dim) if header.store_patches else None
    raw = encoded.raw.numpy().reshape(count, num_frames, -1) if header.raw_dim else None
    coarse = meanp.video_embedding(frames).numpy()
    return [
        MomentFeatures(
            start_s=round(float(m.start_s), 3),
            end_s=round(float(m.end_s), 3),
            frame_times_s=[round(float(t), 3) for t in m.timestamps_s],
            coarse=coarse[i],
            frames=frames[i],
            patches=patches[i] if patches is not None else None,
            strip_jpeg=strip,
            raw=raw[i] if raw is not None else None,
        )
        for i, (m, strip) in enumerate(zip(moments, strips))
    ]
