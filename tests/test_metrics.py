"""Rank and recall metrics against hand-computed values, plus property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vtr_core.training.metrics import (
    ranks_from_similarity,
    recall_metrics,
    text_to_video_metrics,
    video_to_group_similarity,
    video_to_text_metrics,
    video_to_text_ranks,
)

NAN = float("nan")


# ---------------------------------------------------------------- ranks by hand


def test_ranks_hand_example_with_ties():
    sim = np.array(
        [
            [0.5, 0.5, 0.1],  # target 0: column 1 ties it -> counted ahead -> rank 2
            [0.5, 0.5, 0.1],  # target 1: column 0 ties it -> rank 2
            [0.9, 0.8, 0.1],  # target 2: both others higher -> rank 3
        ]
    )
    assert ranks_from_similarity(sim, [0, 1, 2]).tolist() == [2, 2, 3]
    # the same rows with other targets: 0.1 is beaten by both 0.5s; 0.9 is the strict maximum
    assert ranks_from_similarity(sim, [2, 2, 0]).tolist() == [3, 3, 1]
    # no tie: [0.1, 0.3, 0.2] with target 2 -> only 0.3 is ahead
    assert ranks_from_similarity(np.array([[0.1, 0.3, 0.2]]), [2]).tolist() == [2]


def test_ranks_accept_torch_and_return_int_numpy():
    sim = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.9, 0.3]], requires_grad=True)
    ranks = ranks_from_similarity(sim, torch.tensor([0, 2]))
    assert isinstance(ranks, np.ndarray) and ranks.dtype.kind == "i"
    assert ranks.tolist() == [2, 2]


def test_ranks_nan_counts_as_minus_infinity():
    sim = np.array(
        [
            [NAN, 0.2, 0.1],  # target 1: NaN is -inf, below 0.2 -> rank 1
            [0.3, NAN, 0.1],  # target 1 is -inf: every other score >= it -> rank 3
            [NAN, NAN, 0.1],  # target 0 is -inf: the other NaN (-inf >= -inf) and 0.1 -> rank 3
            [NAN, NAN, 0.1],  # target 2: both NaNs are below -> rank 1
        ]
    )
    assert ranks_from_similarity(sim, [1, 1, 0, 2]).tolist() == [1, 3, 3, 1]


def test_constant_scorer_gets_worst_rank():
    sim = np.full((4, 5), 0.7)
    assert ranks_from_similarity(sim, [0, 1, 2, 4]).tolist() == [5, 5, 5, 5]
    assert ranks_from_similarity(np.zeros((3, 3)), [0, 1, 2]).tolist() == [3, 3, 3]


def test_ranks_reject_bad_targets():
    sim = np.zeros((2, 3))
    with pytest.raises(ValueError):
        ranks_from_similarity(sim, [0, 3])
    with pytest.raises(ValueError):
        ranks_from_similarity(sim, [0, -1])
    with pytest.raises(ValueError):
        ranks_from_similarity(sim, [0])
    with pytest.raises(ValueError):
        ranks_from_similarity(np.zeros(3), [0])


# ---------------------------------------------------------------- recall


def test_recall_metrics_hand_example():
    m = recall_metrics(np.array([1, 2, 6, 11]))
    assert m["R@1"] == pytest.approx(25.0)
    assert m["R@5"] == pytest.approx(50.0)
    assert m["R@10"] == pytest.approx(75.0)
    assert m["MdR"] == pytest.approx(4.0)  # mean of the middle ranks 2 and 6
    assert m["MnR"] == pytest.approx(5.0)  # (1 + 2 + 6 + 11) / 4
    assert m["count"] == 4


def test_recall_metrics_percent_and_odd_median():
    m = recall_metrics([1, 7, 3])
    assert m["R@1"] == pytest.approx(100.0 / 3)
    assert m["R@5"] == pytest.approx(200.0 / 3)
    assert m["MdR"] == pytest.approx(3.0)
    assert m["MnR"] == pytest.approx(11.0 / 3)


def test_recall_metrics_rejects_empty_and_zero_ranks():
    with pytest.raises(ValueError):
        recall_metrics([])
    with pytest.raises(ValueError):
        recall_metrics([0, 1])


def test_text_to_video_metrics_hand_example():
    sim = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.3, 0.2, 0.1], [0.1, 0.2, 0.8]])
    # captions 0,1 belong to video 0; 2 to video 1; 3 to video 2 -> ranks 1, 2, 2, 1
    m = text_to_video_metrics(sim, [0, 0, 1, 2])
    assert m["R@1"] == pytest.approx(50.0)
    assert m["MdR"] == pytest.approx(1.5)
    assert m["MnR"] == pytest.approx(1.5)
    assert m["count"] == 4


# ---------------------------------------------------------------- video-to-text, multi-caption

# 7 captions (interleaved on purpose) of 3 videos: video 0 has captions 0 and 2, video 1 has 1 and 4,
# video 2 has 3, 5 and 6.
V2T_SIM = np.array(
    [
        # v0    v1    v2
        [0.90, 0.10, 0.45],  # c0 of v0
        [0.50, 0.60, 0.30],  # c1 of v1
        [0.00, 0.20, 0.00],  # c2 of v0
        [0.20, 0.00, 0.40],  # c3 of v2
        [0.50, 0.30, 0.30],  # c4 of v1
        [0.10, 0.10, 0.40],  # c5 of v2
        [0.30, 0.10, 0.40],  # c6 of v2
    ]
)
V2T_VIDEO_OF_TEXT = np.array([0, 1, 0, 2, 1, 2, 2])


def test_video_to_text_max_over_captions_by_hand():
    # Column v0: group0 max(.9, 0) = .9, group1 max(.5, .5) = .5, group2 max(.2, .1, .3) = .3
    # Column v1: group0 max(.1, .2) = .2, group1 max(.6, .3) = .6, group2 max(0, .1, .1) = .1
    # Column v2: group0 max(.45, 0) = .45, group1 max(.3, .3) = .3, group2 max(.4, .4, .4) = .4
    expected_groups = np.array([[0.9, 0.5, 0.3], [0.2, 0.6, 0.1], [0.45, 0.3, 0.4]])
    np.testing.assert_allclose(video_to_group_similarity(V2T_SIM, V2T_VIDEO_OF_TEXT), expected_groups)
    # v0: .9 is the max -> 1; v1: .6 is the max -> 1; v2: group0's .45 beats its own .4 -> 2
    assert video_to_text_ranks(V2T_SIM, V2T_VIDEO_OF_TEXT).tolist() == [1, 1, 2]

    m = video_to_text_metrics(V2T_SIM, V2T_VIDEO_OF_TEXT)
    assert m["R@1"] == pytest.approx(200.0 / 3)
    assert m["R@5"] == pytest.approx(100.0)
    assert m["MdR"] == pytest.approx(1.0)
    assert m["MnR"] == pytest.approx(4.0 / 3)
    assert m["count"] == 3


def test_video_to_text_max_differs_from_mean():
    # Mean over captions instead: v0: group0 .45 < group1 .5 -> rank 2; v2: own .4 beats .225 and .3
    mean_groups = np.array(
        [
            [(0.9 + 0.0) / 2, (0.5 + 0.5) / 2, (0.2 + 0.1 + 0.3) / 3],
            [(0.1 + 0.2) / 2, (0.6 + 0.3) / 2, (0.0 + 0.1 + 0.1) / 3],
            [(0.45 + 0.0) / 2, (0.3 + 0.3) / 2, (0.4 + 0.4 + 0.4) / 3],
        ]
    )
    assert ranks_from_similarity(mean_groups, [0, 1, 2]).tolist() == [2, 1, 1]
    assert video_to_text_ranks(V2T_SIM, V2T_VIDEO_OF_TEXT).tolist() == [1, 1, 2]


def test_video_to_text_nan_and_ties():
    sim = np.array([[NAN, 0.5], [0.5, 0.5]])  # c0 of v0 (NaN on v0), c1 of v1
    # v0: group0 -inf, group1 .5 -> rank 2; v1: group0 .5 ties group1 .5 -> pessimistic rank 2
    assert video_to_text_ranks(sim, [0, 1]).tolist() == [2, 2]


def test_video_to_text_requires_a_caption_per_video():
    sim = np.zeros((3, 3))
    with pytest.raises(ValueError, match="video column 1"):
        video_to_text_metrics(sim, [0, 2, 2])


def test_video_to_text_accepts_torch():
    m = video_to_text_metrics(torch.as_tensor(V2T_SIM), torch.as_tensor(V2T_VIDEO_OF_TEXT))
    assert m["R@1"] == pytest.approx(200.0 / 3)


# ---------------------------------------------------------------- properties

# Integer-valued scores (as floats) keep "add a constant" exact and make ties frequent; NaN included.
SCORES = st.sampled_from([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, NAN])


@st.composite
def sim_and_targets(draw):
    q = draw(st.integers(1, 6))
    v = draw(st.integers(1, 6))
    sim = draw(hnp.arrays(np.float64, (q, v), elements=SCORES))
    targets = np.array(draw(st.lists(st.integers(0, v - 1), min_size=q, max_size=q)), dtype=np.int64)
    return sim, targets


def _ranks_by_definition(sim: np.ndarray, targets: np.ndarray) -> list[int]:
    out = []
    for q, t in enumerate(targets):
        row = [(-math.inf if math.isnan(x) else x) for x in sim[q]]
        out.append(1 + sum(1 for j, x in enumerate(row) if j != t and x >= row[t]))
    return out


@settings(max_examples=200, deadline=None)
@given(sim_and_targets())
def test_ranks_match_definition_and_range(data):
    sim, targets = data
    ranks = ranks_from_similarity(sim, targets)
    assert ranks.tolist() == _ranks_by_definition(sim, targets)
    assert np.all(ranks >= 1) and np.all(ranks <= sim.shape[1])


@settings(max_examples=200, deadline=None)
@given(sim_and_targets(), st.data())
def test_ranks_invariant_to_column_permutation(data, extra):
    sim, targets = data
    v = sim.shape[1]
    perm = np.array(extra.draw(st.permutations(range(v))), dtype=np.int64)
    new_pos = np.empty(v, dtype=np.int64)
    new_pos[perm] = np.arange(v)  # old column perm[k] moves to position k
    np.testing.assert_array_equal(
        ranks_from_similarity(sim[:, perm], new_pos[targets]), ranks_from_similarity(sim, targets)
    )


@settings(max_examples=200, deadline=None)
@given(sim_and_targets(), st.data())
def test_ranks_invariant_to_row_offset(data, extra):
    sim, targets = data
    q = extra.draw(st.integers(0, sim.shape[0] - 1))
    c = extra.draw(st.integers(-50, 50))
    shifted = sim.copy()
    shifted[q] += c
    np.testing.assert_array_equal(ranks_from_similarity(shifted, targets), ranks_from_similarity(sim, targets))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=50))
def test_recall_is_monotone_in_k(ranks):
    m = recall_metrics(ranks)
    assert 0.0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 100.0
    assert min(ranks) <= m["MdR"] <= max(ranks)
    assert m["MnR"] == pytest.approx(sum(ranks) / len(ranks))


@settings(max_examples=100, deadline=None)
@given(sim_and_targets())
def test_one_caption_per_video_v2t_equals_transposed_t2v(data):
    # With exactly one caption per video (caption i of video i) the max over a group is that
    # caption's score, so video-to-text is text-to-video on the transposed matrix.
    sim, _ = data
    n = min(sim.shape)
    square = sim[:n, :n]
    ident = np.arange(n)
    np.testing.assert_array_equal(video_to_text_ranks(square, ident), ranks_from_similarity(square.T, ident))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_perfect_similarity_scores_perfectly_both_ways(data):
    # Every caption scores 1 with its own video and below 1 with any other: R@k is 100 and every
    # rank is 1 in both directions, however many captions each video has.
    v = data.draw(st.integers(1, 12))
    extra = data.draw(st.lists(st.integers(0, v - 1), max_size=2 * v))
    video_of_text = np.array(data.draw(st.permutations(list(range(v)) + extra)), dtype=np.int64)
    sim = data.draw(hnp.arrays(np.float64, (len(video_of_text), v), elements=st.floats(-1.0, 0.999)))
    sim[np.arange(len(video_of_text)), video_of_text] = 1.0
    for metrics in (text_to_video_metrics(sim, video_of_text), video_to_text_metrics(sim, video_of_text)):
        assert metrics["R@1"] == metrics["R@5"] == metrics["R@10"] == 100.0
        assert metrics["MdR"] == metrics["MnR"] == 1.0
    # and the exact opposite: own video strictly last, every rank is V
    assert text_to_video_metrics(-sim, video_of_text)["MdR"] == v
