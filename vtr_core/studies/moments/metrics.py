"""Moment retrieval metrics: temporal IoU and the video corpus moment retrieval protocol of TVR.

Why a module of its own: the long-video benchmark compares every method on the same numbers, so the
hit rule has to be exact, shared and testable by hand. The protocol (Lei et al., "TVR", ECCV 2020,
video corpus moment retrieval): each query has one ground-truth moment (video, start, end) and a
ranked list of predicted moments over the whole corpus; moment R@k at tIoU >= t counts a query as
found when any of its top k predictions lies in the ground-truth video with tIoU >= t. Video R@k
asks only that one of the top k predictions lies in the right video. Percentages, as
vtr_core.training.metrics reports recalls. Pure computation; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

RECALL_KS = (1, 5)
IOU_THRESHOLDS = (0.5, 0.7)
IOU_SLACK = 1e-9  # tIoU exactly at a threshold (e.g. 7/10 as a float) counts as reaching it


@dataclass(frozen=True)
class Moment:
    """A time range of one video (ground truth or prediction)."""

    video: str
    start_s: float
    end_s: float


def temporal_iou(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    """Intersection over union of two time ranges; 0 when they do not overlap or the union is empty."""
    intersection = max(0.0, min(a_end, b_end) - max(a_start, b_start))
    union = max(a_end, b_end) - min(a_start, b_start)
    return intersection / union if union > 0 else 0.0


def moment_iou(prediction: Moment, truth: Moment) -> float:
    """tIoU of a prediction with the ground truth, 0 for a prediction in another video."""
    if prediction.video != truth.video:
        return 0.0
    return temporal_iou(prediction.start_s, prediction.end_s, truth.start_s, truth.end_s)


def moment_hit(predictions: Sequence[Moment], truth: Moment, k: int, threshold: float) -> bool:
    """Whether any of the top k predictions is in the truth's video with tIoU >= threshold."""
    return any(moment_iou(p, truth) >= threshold - IOU_SLACK for p in predictions[:k])


def video_hit(predictions: Sequence[Moment], truth: Moment, k: int) -> bool:
    """Whether any of the top k predictions is in the truth's video (any time range)."""
    return any(p.video == truth.video for p in predictions[:k])


def metric_name(k: int, threshold: float | None = None) -> str:
    """`R@1@0.5` for moment recall at tIoU >= 0.5, `video R@1` for video recall."""
    return f"video R@{k}" if threshold is None else f"R@{k}@{threshold:g}"


def corpus_moment_metrics(predictions: Sequence[Sequence[Moment]], truths: Sequence[Moment],
                          ks: Sequence[int] = RECALL_KS,
                          thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, float | int]:
    """Moment R@k at each tIoU threshold, video R@k, and the query count, over ranked predictions.

    predictions[q] is query q's ranked list (best first, any length, possibly empty); truths[q] its
    ground truth. Recalls are percentages of the queries.
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} prediction lists for {len(truths)} queries")
    if not truths:
        raise ValueError("moment metrics need at least one query")
    out: dict[str, float | int] = {}
    for threshold in thresholds:
        for k in ks:
            hits = sum(moment_hit(p, t, k, threshold) for p, t in zip(predictions, truths))
            out[metric_name(k, threshold)] = 100.0 * hits / len(truths)
    for k in ks:
        out[metric_name(k)] = 100.0 * sum(video_hit(p, t, k) for p, t in zip(predictions, truths)) / len(truths)
    out["queries"] = len(truths)
    return out
