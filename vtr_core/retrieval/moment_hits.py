"""From ranked moments to what a user reads: ranges of one video merged, or one range per video.

A query often matches a stretch of a video longer than one moment (a scene cut into shots, or the
overlapping windows around it). `group_hits` walks the ranked moments best first and joins a hit
to an earlier range of the same video when the two overlap or touch (within `gap_s`); the range
keeps the better-ranked hit's score and place, and grows only with hits among the `top_k` best
moments. Limits, stated: only the `pool` of moments handed
in is seen (the searcher fetches a few times `top_k`), so a video whose moments all rank below
the pool is missed, and fewer than `top_k` ranges come back when the pool runs out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence, TypeVar

MERGE_GAP_S = 0.5  # shots touch end to start; windows overlap; half a second of slack for rounding
POOL_FACTOR = 8  # moments fetched per range asked for, when merging or keeping one range per video


class Ranged(Protocol):
    video_id: str
    start_s: float
    end_s: float
    rank: int


HitT = TypeVar("HitT", bound=Ranged)


@dataclass
class _Range:
    best: Ranged
    start_s: float
    end_s: float
    merged: int = 1

    def touches(self, hit: Ranged, gap_s: float) -> bool:
        return hit.start_s <= self.end_s + gap_s and self.start_s <= hit.end_s + gap_s


def group_hits(hits: Sequence[HitT], top_k: int, merge: bool = True, per_video: bool = False,
               gap_s: float = MERGE_GAP_S) -> list[HitT]:
    """At most `top_k` hits, best first, re-ranked from 1. With `merge`, a hit overlapping or
    touching a better one of its video is not listed: among the `top_k` best moments it widens
    that one's range (the range keeps the better score and place); further down it only joins it,
    so a video whose every moment scores well does not grow into one range as long as the video.
    With `per_video`, each video's best moment alone is kept, as it is (nothing widens it: in a
    small collection the `top_k` best moments can all be one video's). `hits` must be in rank
    order; their own fields are not changed."""
    merge = merge and not per_video
    ranges: list[_Range] = []
    by_video: dict[str, list[_Range]] = {}
    for position, hit in enumerate(hits):
        own = by_video.setdefault(hit.video_id, [])
        joined = [r for r in own if r.touches(hit, gap_s)] if merge else []
        if joined:
            if position < top_k:
                _widen(joined, hit, ranges, own)
            continue
        if per_video and own:
            continue
        if len(ranges) == top_k:
            break
        new = _Range(hit, hit.start_s, hit.end_s)
        ranges.append(new)
        own.append(new)
    return [replace(r.best, rank=i + 1, start_s=r.start_s, end_s=r.end_s) for i, r in enumerate(ranges)]


def _widen(joined: list[_Range], hit: Ranged, ranges: list[_Range], own: list[_Range]) -> None:
    """The best ranked of the ranges `hit` touches takes in the hit, and the others it bridges."""
    keep = joined[0]
    for other in joined[1:]:
        keep.start_s, keep.end_s = min(keep.start_s, other.start_s), max(keep.end_s, other.end_s)
        keep.merged += other.merged
        ranges.remove(other)
        own.remove(other)
    keep.start_s, keep.end_s = min(keep.start_s, hit.start_s), max(keep.end_s, hit.end_s)
    keep.merged += 1


def pool_size(top_k: int, merge: bool, per_video: bool) -> int:
    """How many ranked moments to fetch for `top_k` results."""
    return top_k * POOL_FACTOR if merge or per_video else top_k


def clock(seconds: float) -> str:
    """1:23, 12:05 or 1:02:03: how a time in a video is written for people."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_range(start_s: float, end_s: float) -> str:
    """`1:23-1:35`: a moment's range as people write it."""
    return f"{clock(start_s)}-{clock(end_s)}"
