"""CLIP4Clip mean pooling: a video is the mean of its L2-normalised frame features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def video_embedding(frame_features: torch.Tensor | np.ndarray) -> torch.Tensor:
    """[..., T, D] frame features -> [..., D] unit vectors: norm(mean_t norm(f_t))."""
    frames = torch.as_tensor(np.asarray(frame_features, dtype=np.float32) if isinstance(frame_features, np.ndarray) else frame_features).float()
    return F.normalize(F.normalize(frames, dim=-1).mean(-2), dim=-1)


def query_embedding(sentence_features: torch.Tensor) -> torch.Tensor:
    return F.normalize(sentence_features.float(), dim=-1)
