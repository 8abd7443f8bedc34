"""Retrieval metrics (R@K, median and mean rank) for text-to-video and video-to-text.

Why a module of its own: every method (mean pooling, S3MA, EERCF, CAMoE+DSL) is compared on the
same numbers, so the rank definition has to be exact and shared. Two rules matter:

* Ties are broken PESSIMISTICALLY: the rank of the correct item is
  1 + #{j != target : sim[q, j] >= sim[q, target]}. A scorer that gives every item the same
  score therefore gets rank V (the worst), never an inflated rank 1. NaN scores count as -inf.
* Video-to-text with several captions per video (MSR-VTT has 20) follows CLIP4Clip's
  multi-caption protocol: the score of caption group g (all captions of video g) for video v is
  the MAX over the captions of g of sim[c, v]; the resulting [V, V] video x group matrix is
  ranked with the correct group of video v being group v.

Everything here is pure computation over in-memory arrays; no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

RECALL_KS = (1, 5, 10)


def _as_numpy(x: Any, dtype: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like -> numpy array of dtype."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64 if np.dtype(dtype).kind == "f" else torch.int64).numpy()
    return np.asarray(x, dtype=dtype)


def _as_similarity(sim: Any) -> np.ndarray:
    """[R, C] float64 similarity matrix with NaN replaced by -inf."""
    s = _as_numpy(sim, np.float64)
    if s.ndim != 2:
        raise ValueError(f"similarity must be 2-D [queries, items], got shape {s.shape}")
    return np.where(np.isnan(s), -np.inf, s)


def _as_targets(targets: Any, count: int, num_columns: int, what: str) -> np.ndarray:
    """[count] int64 column indices, each in [0, num_columns)."""
    t_float = _as_numpy(targets, np.float64)
    if t_float.ndim != 1 or t_float.shape[0] != count:
        raise ValueError(f"{what} must be 1-D of length {count}, got shape {t_float.shape}")
    if not np.all(np.isfinite(t_float)) or not np.all(t_float == np.round(t_float)):
        raise ValueError(f"{what} must hold integer column indices")
    t = t_float.astype(np.int64)
    bad = np.flatnonzero((t < 0) | (t >= num_columns))
    if bad.size:
        raise ValueError(
            f"{what}[{bad[0]}] = {t[bad[0]]} is outside the {num_columns} columns of the similarity"
        )
    return t


def ranks_from_similarity(sim: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> np.ndarray:
    """1-based rank of each row's correct column, with pessimistic ties.

    sim: [Q, V], higher = better. targets: [Q] int, the correct column of each row.
    rank[q] = 1 + #{j != targets[q] : sim[q, j] >= sim[q, targets[q]]}, so tied items are all
    placed ahead of the correct one (a constant scorer gets rank V). NaN scores count as -inf.
    Returns an int64 array [Q].
    """
    s = _as_similarity(sim)
    q, v = s.shape
    t = _as_targets(targets, q, v, "targets")
    rows = np.arange(q)
    correct = s[rows, t]
    at_least = (s >= correct[:, None]).sum(axis=1)  # includes the target itself (x >= x)
    return at_least.astype(np.int64)  # = 1 + #{j != target : s[q, j] >= s[q, target]}


def recall_metrics(ranks: torch.Tensor | np.ndarray) -> dict[str, float | int]:
    """Summary of 1-based ranks: R@1, R@5, R@10 (percent), MdR (median), MnR (mean), count.

    MdR is numpy's median (the mean of the two middle ranks for an even count).
    """
    r = _as_numpy(ranks, np.float64).reshape(-1)
    if r.size == 0:
        raise ValueError("recall_metrics needs at least one rank")
    if np.any(r < 1) or not np.all(np.isfinite(r)):
        raise ValueError("ranks are 1-based and finite")
    out: dict[str, float | int] = {f"R@{k}": float(100.0 * np.mean(r <= k)) for k in RECALL_KS}
    out["MdR"] = float(np.median(r))
    out["MnR"] = float(np.mean(r))
    out["count"] = int(r.size)
    return out


def text_to_video_metrics(sim: torch.Tensor | np.ndarray, video_of_text: torch.Tensor | np.ndarray) -> dict[str, float | int]:
    """Text-to-video metrics. sim: [C, V] captions x videos; video_of_text: [C] correct column.

    Each caption is one query ranked over all videos, with pessimistic ties.
    """
    return recall_metrics(ranks_from_similarity(sim, video_of_text))


def video_to_group_similarity(sim: torch.Tensor | np.ndarray, video_of_text: torch.Tensor | np.ndarray) -> np.ndarray:
    """[C, V] captions x videos -> [V, V] video x caption-group scores (CLIP4Clip multi-caption).

    Entry [v, g] is the MAX over the captions c of video g (video_of_text[c] == g) of sim[c, v];
    NaN counts as -inf. Every video must have at least one caption (ValueError otherwise).
    """
    s = _as_similarity(sim)
    c, v = s.shape
    t = _as_targets(video_of_text, c, v, "video_of_text")
    counts = np.bincount(t, minlength=v)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise ValueError(
            f"video column {missing[0]} has no caption in video_of_text "
            f"({missing.size} of {v} videos have none); video-to-text needs at least one per video"
        )
    group_by_video = np.full((v, v), -np.inf)  # [g, v]
    np.maximum.at(group_by_video, t, s)
    return group_by_video.T


def video_to_text_ranks(sim: torch.Tensor | np.ndarray, video_of_text: torch.Tensor | np.ndarray) -> np.ndarray:
    """[V] 1-based ranks of each video's own caption group, max over captions, pessimistic ties."""
    groups = video_to_group_similarity(sim, video_of_text)
    return ranks_from_similarity(groups, np.arange(groups.shape[0]))


def video_to_text_metrics(sim: torch.Tensor | np.ndarray, video_of_text: torch.Tensor | np.ndarray) -> dict[str, float | int]:
    """Video-to-text metrics over [C, V] captions x videos (same orientation as text-to-video).

    Multi-caption rule (CLIP4Clip): a video's score for caption group g is the MAX of its scores
    over the captions of video g; each video is then ranked over the V groups, its own group being
    correct, with pessimistic ties (1 + #{other groups scoring >= its own}). Raises ValueError if
    some video has no caption.
    """
    return recall_metrics(video_to_text_ranks(sim, video_of_text))
