"""Ranked moments to ranges: merging adjacent hits of a video, one range per video, time labels."""

from __future__ import annotations

import pytest

from vtr_core.retrieval.moment_hits import clock, group_hits, pool_size, time_range
from vtr_core.retrieval.search import SearchHit


def hit(rank: int, video: str, start: float, end: float, score: float) -> SearchHit:
    return SearchHit(rank=rank, video_id=video, path=f"{video}.mp4", score=score, coarse_rank=rank,
                     coarse_score=score, reranked=False, moment_id=100 + rank, start_s=start, end_s=end)


RANKED = [  # best first: b's two windows overlap; a's 10-20 touches 20-30; a's 50-60 stands alone
    hit(1, "a", 20, 30, 0.9),
    hit(2, "b", 0, 32, 0.8),
    hit(3, "a", 10, 20, 0.7),
    hit(4, "b", 16, 48, 0.6),
    hit(5, "a", 50, 60, 0.5),
    hit(6, "c", 0, 10, 0.4),
]


def ranges(hits: list[SearchHit]) -> list[tuple]:
    return [(h.rank, h.video_id, h.start_s, h.end_s, h.score, h.moment_id) for h in hits]


def test_merge_joins_touching_and_overlapping_hits_keeping_the_best_score_and_place():
    assert ranges(group_hits(RANKED, top_k=10)) == [
        (1, "a", 10, 30, 0.9, 101),
        (2, "b", 0, 48, 0.8, 102),
        (3, "a", 50, 60, 0.5, 105),
        (4, "c", 0, 10, 0.4, 106),
    ]
    assert RANKED[0].start_s == 20 and RANKED[0].rank == 1  # the input hits are not changed


def test_without_merge_every_moment_is_listed_and_top_k_cuts():
    assert ranges(group_hits(RANKED, top_k=3, merge=False)) == [
        (1, "a", 20, 30, 0.9, 101), (2, "b", 0, 32, 0.8, 102), (3, "a", 10, 20, 0.7, 103)]


def test_per_video_keeps_each_videos_best_moment_as_it_is():
    assert ranges(group_hits(RANKED, top_k=10, per_video=True)) == ranges(group_hits(RANKED, 10, False, True)) == [
        (1, "a", 20, 30, 0.9, 101), (2, "b", 0, 32, 0.8, 102), (3, "c", 0, 10, 0.4, 106)]


def test_a_hit_bridging_two_ranges_makes_them_one():
    bridged = [hit(1, "a", 0, 10, 0.9), hit(2, "a", 20, 30, 0.8), hit(3, "a", 10, 20, 0.7), hit(4, "z", 0, 5, 0.1)]
    assert ranges(group_hits(bridged, top_k=5)) == [(1, "a", 0, 30, 0.9, 101), (2, "z", 0, 5, 0.1, 104)]


def test_gap_and_top_k_limits():
    apart = [hit(1, "a", 0, 10, 0.9), hit(2, "a", 10.4, 20, 0.8), hit(3, "a", 21, 30, 0.7)]
    assert ranges(group_hits(apart, top_k=5)) == [(1, "a", 0, 20, 0.9, 101), (2, "a", 21, 30, 0.7, 103)]
    assert ranges(group_hits(apart, top_k=5, gap_s=0.0)) == [
        (1, "a", 0, 10, 0.9, 101), (2, "a", 10.4, 20, 0.8, 102), (3, "a", 21, 30, 0.7, 103)]
    # once top_k ranges are listed, a hit that would start another ends the walk
    assert ranges(group_hits(RANKED, top_k=1)) == [(1, "a", 20, 30, 0.9, 101)]
    assert pool_size(5, merge=False, per_video=False) == 5 and pool_size(5, merge=True, per_video=False) > 5


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (83.4, "1:23"), (599.6, "10:00"), (3723, "1:02:03")])
def test_clock(seconds, text):
    assert clock(seconds) == text


def test_time_range():
    assert time_range(83, 95) == "1:23-1:35"


def test_only_the_top_k_moments_widen_a_range_deeper_ones_are_absorbed():
    # a's 10-20 and b's 16-48 rank 3rd and 4th: below the two asked for, they widen nothing, and
    # are not listed either (they belong to a listed range)
    assert ranges(group_hits(RANKED, top_k=2)) == [(1, "a", 20, 30, 0.9, 101), (2, "b", 0, 32, 0.8, 102)]
    every_window = [hit(r + 1, "long", 20 * r, 20 * r + 40, 1.0 - 0.01 * r) for r in range(14)] + [
        hit(15, "short", 0, 2.4, 0.2)]
    # the three best windows make 0-80; 60-100 and 80-120 join it without widening it; 100-140 starts
    # the next range, and so on: ranges of the video that do not overlap, not one range of all of it
    assert ranges(group_hits(every_window, top_k=3)) == [
        (1, "long", 0, 80, 1.0, 101), (2, "long", 100, 140, 0.95, 106), (3, "long", 160, 200, 0.92, 109)]
    assert ranges(group_hits(every_window, top_k=3, per_video=True)) == [
        (1, "long", 0, 40, 1.0, 101), (2, "short", 0, 2.4, 0.2, 115)]
