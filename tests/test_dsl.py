"""Dual Softmax loss / revisers and inverted softmax against hand-written exp arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vtr_core.methods.losses import dual_softmax_loss, dual_softmax_prior
from vtr_core.retrieval.dsl import (
    dsl_revise,
    dsl_revise_v2t,
    inverted_softmax,
    inverted_softmax_v2t,
)
from vtr_core.training.metrics import text_to_video_metrics, video_to_text_metrics

# X = [[a, b], [c, d]]: rows are texts, columns are videos, matches on the diagonal.
A, B, C, D = 1.0, 0.5, 0.2, 0.8
X2 = [[A, B], [C, D]]


def _log_sum_exp2(u: float, v: float) -> float:
    return math.log(math.exp(u) + math.exp(v))


def test_dual_softmax_prior_2x2_by_hand():
    t = 0.5
    # column 0 holds a, c; column 1 holds b, d; each column is a softmax over its 2 texts, times N=2
    expected = [
        [2 * math.exp(A / t) / (math.exp(A / t) + math.exp(C / t)), 2 * math.exp(B / t) / (math.exp(B / t) + math.exp(D / t))],
        [2 * math.exp(C / t) / (math.exp(A / t) + math.exp(C / t)), 2 * math.exp(D / t) / (math.exp(B / t) + math.exp(D / t))],
    ]
    got = dual_softmax_prior(torch.tensor(X2, dtype=torch.float64), t)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    # numpy input gives the same numbers
    np.testing.assert_allclose(dual_softmax_prior(np.array(X2), t).numpy(), expected, rtol=1e-12)


def test_dsl_revise_2x2_by_hand():
    t = 0.25
    expected = [
        [A * math.exp(A / t) / (math.exp(A / t) + math.exp(C / t)), B * math.exp(B / t) / (math.exp(B / t) + math.exp(D / t))],
        [C * math.exp(C / t) / (math.exp(A / t) + math.exp(C / t)), D * math.exp(D / t) / (math.exp(B / t) + math.exp(D / t))],
    ]
    np.testing.assert_allclose(dsl_revise(np.array(X2), t).numpy(), expected, rtol=1e-12)
    # v2t: the softmax runs over videos within each caption's row instead
    expected_v2t = [
        [A * math.exp(A / t) / (math.exp(A / t) + math.exp(B / t)), B * math.exp(B / t) / (math.exp(A / t) + math.exp(B / t))],
        [C * math.exp(C / t) / (math.exp(C / t) + math.exp(D / t)), D * math.exp(D / t) / (math.exp(C / t) + math.exp(D / t))],
    ]
    np.testing.assert_allclose(dsl_revise_v2t(np.array(X2), t).numpy(), expected_v2t, rtol=1e-12)


def test_inverted_softmax_2x2_by_hand():
    t = 0.5
    expected = [
        [math.exp(A / t) / (math.exp(A / t) + math.exp(C / t)), math.exp(B / t) / (math.exp(B / t) + math.exp(D / t))],
        [math.exp(C / t) / (math.exp(A / t) + math.exp(C / t)), math.exp(D / t) / (math.exp(B / t) + math.exp(D / t))],
    ]
    np.testing.assert_allclose(inverted_softmax(np.array(X2), t).numpy(), expected, rtol=1e-12)
    expected_v2t = [
        [math.exp(A / t) / (math.exp(A / t) + math.exp(B / t)), math.exp(B / t) / (math.exp(A / t) + math.exp(B / t))],
        [math.exp(C / t) / (math.exp(C / t) + math.exp(D / t)), math.exp(D / t) / (math.exp(C / t) + math.exp(D / t))],
    ]
    np.testing.assert_allclose(inverted_softmax_v2t(np.array(X2), t).numpy(), expected_v2t, rtol=1e-12)


def test_dual_softmax_loss_2x2_by_hand():
    t = 0.5
    ea, eb, ec, ed = (math.exp(v / t) for v in (A, B, C, D))
    # text -> video: prior over texts within each video's column
    pa, pc = 2 * ea / (ea + ec), 2 * ec / (ea + ec)
    pb, pd = 2 * eb / (eb + ed), 2 * ed / (eb + ed)
    a1, b1, c1, d1 = A * pa, B * pb, C * pc, D * pd
    l_t2v = 0.5 * ((_log_sum_exp2(a1, b1) - a1) + (_log_sum_exp2(c1, d1) - d1))
    # video -> text: X^T = [[a, c], [b, d]], prior over the rows of X^T within each column,
    # i.e. over videos within each text
    qa, qb = 2 * ea / (ea + eb), 2 * eb / (ea + eb)
    qc, qd = 2 * ec / (ec + ed), 2 * ed / (ec + ed)
    a2, c2, b2, d2 = A * qa, C * qc, B * qb, D * qd
    l_v2t = 0.5 * ((_log_sum_exp2(a2, c2) - a2) + (_log_sum_exp2(b2, d2) - d2))
    expected = 0.5 * (l_t2v + l_v2t)

    got = dual_softmax_loss(torch.tensor(X2, dtype=torch.float64), temperature=t)
    assert got.dim() == 0
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # and the prior really matters here: plain symmetric InfoNCE of X is a different number
    plain = 0.5 * (
        0.5 * ((_log_sum_exp2(A, B) - A) + (_log_sum_exp2(C, D) - D))
        + 0.5 * ((_log_sum_exp2(A, C) - A) + (_log_sum_exp2(B, D) - D))
    )
    assert abs(expected - plain) > 1e-3


def _symmetric_info_nce(x: torch.Tensor) -> torch.Tensor:
    """Hand-rolled 1/2 (CE(X) + CE(X^T)) with the diagonal as the labels."""
    diag = torch.diagonal(x)
    ce_rows = (torch.logsumexp(x, dim=1) - diag).mean()
    ce_cols = (torch.logsumexp(x, dim=0) - diag).mean()
    return 0.5 * (ce_rows + ce_cols)


def test_dual_softmax_loss_large_temperature_is_symmetric_info_nce():
    x = torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    got = dual_softmax_loss(x, temperature=1e9)
    assert got.item() == pytest.approx(_symmetric_info_nce(x).item(), abs=1e-5)
    # a small temperature changes the loss (the prior is not a no-op)
    assert abs(dual_softmax_loss(x, temperature=0.5).item() - _symmetric_info_nce(x).item()) > 1e-3


def test_dual_softmax_loss_gradcheck():
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: dual_softmax_loss(m, temperature=0.7), (x,))
    # the gradient flows through the prior too: detaching it gives a different gradient
    loss = dual_softmax_loss(x, temperature=0.7)
    (g_full,) = torch.autograd.grad(loss, x)
    xd = x.detach().clone().requires_grad_(True)
    labels = torch.arange(3)
    detached = 0.5 * (
        F.cross_entropy(xd * (3 * torch.softmax(xd.detach() / 0.7, dim=0)), labels)
        + F.cross_entropy(xd.T * (3 * torch.softmax(xd.detach().T / 0.7, dim=0)), labels)
    )
    (g_detached,) = torch.autograd.grad(detached, xd)
    assert detached.item() == pytest.approx(loss.item(), rel=1e-12)
    assert not torch.allclose(g_full, g_detached, atol=1e-6)


def test_dual_softmax_loss_rejects_non_square():
    with pytest.raises(ValueError):
        dual_softmax_loss(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        dual_softmax_loss(torch.zeros(2, 2), temperature=0.0)


# ---------------------------------------------------------------- hubness

# Video 0 is a hub: it is the top-1 for every query, though only query 0 belongs to it.
HUB = np.array(
    [
        [0.9, 0.5, 0.4],
        [0.8, 0.7, 0.2],
        [0.8, 0.3, 0.6],
    ]
)
DIAG = np.arange(3)


def test_dsl_revise_fixes_hub_text_to_video():
    assert text_to_video_metrics(HUB, DIAG)["R@1"] == pytest.approx(100.0 / 3)
    # t = 0.1: column 0 softmax of [9, 8, 8] gives the hub only e/(e+2) ~ .58 at its own query and
    # 1/(e+2) ~ .21 elsewhere, while columns 1 and 2 give their own queries ~ .87
    revised = dsl_revise(HUB, temperature=0.1)
    assert text_to_video_metrics(revised, DIAG)["R@1"] == pytest.approx(100.0)
    assert text_to_video_metrics(inverted_softmax(HUB, temperature=0.1), DIAG)["R@1"] == pytest.approx(100.0)


def test_revisers_fix_hub_video_to_text():
    # Transposed: caption 0 is the top-1 caption for every video (one caption per video).
    captions_by_videos = HUB.T.copy()
    assert video_to_text_metrics(captions_by_videos, DIAG)["R@1"] == pytest.approx(100.0 / 3)
    revised = dsl_revise_v2t(captions_by_videos, temperature=0.1)
    torch.testing.assert_close(revised, dsl_revise(HUB, temperature=0.1).T)
    assert video_to_text_metrics(revised, DIAG)["R@1"] == pytest.approx(100.0)
    inv = inverted_softmax_v2t(captions_by_videos, temperature=0.1)
    assert video_to_text_metrics(inv, DIAG)["R@1"] == pytest.approx(100.0)


# ---------------------------------------------------------------- stability


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_logits_stay_finite(dtype):
    x = torch.randn(6, 6, generator=torch.Generator().manual_seed(2), dtype=dtype) * 1e4
    for t in (1.0, 1000.0):
        assert torch.isfinite(dual_softmax_loss(x, temperature=t))
        for fn in (dual_softmax_prior, dsl_revise, dsl_revise_v2t, inverted_softmax, inverted_softmax_v2t):
            out = fn(x, t)
            assert out.shape == x.shape and out.dtype == dtype
            assert torch.isfinite(out).all(), fn.__name__
    # the loss still has a finite gradient
    xg = x.clone().requires_grad_(True)
    dual_softmax_loss(xg, temperature=1000.0).backward()
    assert torch.isfinite(xg.grad).all()


# ---------------------------------------------------------------- properties

POSITIVE = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
    elements=st.floats(0.01, 1.0),
)
ANY = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
    elements=st.floats(-50.0, 50.0),
)
TEMPS = st.sampled_from([0.05, 0.5, 1.0, 10.0])


@settings(max_examples=150, deadline=None)
@given(POSITIVE, TEMPS)
def test_dsl_revise_shrinks_nonnegative_scores(s, t):
    out = dsl_revise(s, t)
    assert out.shape == s.shape
    st_ = torch.as_tensor(s)
    assert torch.all(out >= 0) and torch.all(out <= st_)
    # the factor S'/S is a softmax over each column: it sums to 1 per video
    torch.testing.assert_close((out / st_).sum(dim=0), torch.ones(s.shape[1], dtype=torch.float64))
    out_v2t = dsl_revise_v2t(s, t)
    assert torch.all(out_v2t <= st_)
    torch.testing.assert_close((out_v2t / st_).sum(dim=1), torch.ones(s.shape[0], dtype=torch.float64))


@settings(max_examples=150, deadline=None)
@given(ANY, TEMPS, st.data())
def test_inverted_softmax_columns_sum_to_one_and_ignore_column_offsets(s, t, data):
    out = inverted_softmax(s, t)
    torch.testing.assert_close(out.sum(dim=0), torch.ones(s.shape[1], dtype=torch.float64))
    offsets = np.array(data.draw(st.lists(st.floats(-20, 20), min_size=s.shape[1], max_size=s.shape[1])))
    torch.testing.assert_close(inverted_softmax(s + offsets[None, :], t), out, rtol=1e-9, atol=1e-12)
    out_v2t = inverted_softmax_v2t(s, t)
    torch.testing.assert_close(out_v2t.sum(dim=1), torch.ones(s.shape[0], dtype=torch.float64))
    torch.testing.assert_close(out_v2t, inverted_softmax(s.T.copy(), t).T)


@st.composite
def column_dominant(draw):
    """[N, N] scores in [0, 1.3] whose diagonal beats the rest of its column by >= 0.05, hubs allowed."""
    n = draw(st.integers(1, 7))
    s = draw(hnp.arrays(np.float64, (n, n), elements=st.floats(0.0, 1.0)))
    margins = np.array(draw(st.lists(st.floats(0.05, 0.3), min_size=n, max_size=n)))
    off = np.where(np.eye(n, dtype=bool), -np.inf, s).max(axis=0) if n > 1 else np.zeros(1)
    s[np.arange(n), np.arange(n)] = off + margins
    return s


@settings(max_examples=150, deadline=None)
@given(column_dominant())
def test_dsl_revise_turns_a_column_dominant_diagonal_into_perfect_text_to_video(s):
    # Each video's own text is its best (by >= 0.05 = 20 t), though a hub video may top other rows:
    # the softmax over each column leaves the own pair ~1 and shrinks every other by e^-20, so
    # every row's argmax becomes its diagonal. A softmax over the wrong axis would keep the hubs.
    diag = np.arange(len(s))
    revised = dsl_revise(s, temperature=0.0025)
    assert text_to_video_metrics(revised, diag)["R@1"] == 100.0
    assert text_to_video_metrics(revised, diag)["MdR"] == 1.0
    # the video-to-text reviser on the transpose (captions x videos) does the same per video
    assert video_to_text_metrics(dsl_revise_v2t(s.T.copy(), temperature=0.0025), diag)["R@1"] == 100.0
