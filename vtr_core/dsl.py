"""Dual Softmax (CAMoE, Cheng et al. 2021) training loss and the score revisers used at inference.

Why: CAMoE's Dual Softmax Loss (DSL) reweights each text-video logit by a prior taken from the
other retrieval direction, and at inference the same idea (and QB-Norm's inverted softmax,
Bogolin et al., CVPR 2022) suppresses "hub" videos that are the top hit for many queries.

Notation: X (or S) is an [N, M] matrix, rows = texts (queries), columns = videos.

TRANSDUCTIVE: the inference revisers (dsl_revise, dsl_revise_v2t, inverted_softmax,
inverted_softmax_v2t) normalise over the WHOLE query set at once. They cannot serve a single online
query, and numbers obtained with them are not comparable with per-query retrieval; the app and the
evaluator label results that use them. The training loss is unaffected (it sees a batch anyway).

All softmaxes go through torch.softmax / cross_entropy (max-shifted), so logits of 1e4 scale stay
finite. Inputs may be torch tensors or numpy arrays; floating dtypes are kept (float64 stays
float64, e.g. for gradcheck), anything else becomes float32. No I/O.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _as_matrix(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.float()
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D [texts, videos] matrix, got shape {tuple(t.shape)}")
    return t


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    return temperature


def dual_softmax_prior(logits: torch.Tensor | np.ndarray, temperature: float) -> torch.Tensor:
    """CAMoE prior Pr = N * softmax over texts (dim 0, within each video's column) of X / temperature.

    Pr_ij = N * exp(X_ij / t) / sum_m exp(X_mj / t), N = number of rows. Differentiable.
    """
    x = _as_matrix(logits, "logits")
    t = _check_temperature(temperature)
    return x.shape[0] * torch.softmax(x / t, dim=0)


def _dsl_one_direction(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean row-wise cross-entropy of X * Pr(X) with the matches on the diagonal."""
    revised = x * dual_softmax_prior(x, temperature)
    labels = torch.arange(x.shape[0], device=x.device)
    return F.cross_entropy(revised, labels)


def dual_softmax_loss(logits: torch.Tensor | np.ndarray, temperature: float = 1000.0) -> torch.Tensor:
    """Symmetric Dual Softmax Loss over a square [N, N] batch, matches on the diagonal.

    L_t2v: X' = X * Pr(X) (gradients through both factors), mean CE of row softmax at column i.
    L_v2t: the same procedure applied to X^T. Returns the scalar (L_t2v + L_v2t) / 2.
    As temperature -> inf, Pr -> 1 and this becomes the symmetric InfoNCE of X.
    """
    x = _as_matrix(logits, "logits")
    if x.shape[0] != x.shape[1] or x.shape[0] == 0:
        raise ValueError(f"dual_softmax_loss needs a non-empty square batch, got shape {tuple(x.shape)}")
    t = _check_temperature(temperature)
    return 0.5 * (_dsl_one_direction(x, t) + _dsl_one_direction(x.T, t))


def dsl_revise(sim: torch.Tensor | np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """Text-to-video DSL reviser (transductive): S' = S * softmax over texts (dim 0) of S / t.

    Rank each row (text) of the result over videos. The factor N of the training prior is left
    out: it scales every score by the same positive constant, so no ranking changes.
    """
    s = _as_matrix(sim, "sim")
    t = _check_temperature(temperature)
    return s * torch.softmax(s / t, dim=0)


def dsl_revise_v2t(sim: torch.Tensor | np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """Video-to-text DSL reviser (transductive) on [C, V] captions x videos, returning [C, V].

    S' = S * softmax over videos (dim 1) of S / t, i.e. dsl_revise(S.T).T: rank each COLUMN
    (video) of the result over captions (e.g. with metrics.video_to_text_metrics).
    """
    s = _as_matrix(sim, "sim")
    t = _check_temperature(temperature)
    return s * torch.softmax(s / t, dim=1)


def inverted_softmax(sim: torch.Tensor | np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """QB-Norm inverted softmax with the query set as its own bank (transductive), text-to-video.

    S'_ij = exp(S_ij / t) / sum_m exp(S_mj / t): each video's column normalised over all queries.
    Rank each row of the result over videos.
    """
    s = _as_matrix(sim, "sim")
    t = _check_temperature(temperature)
    return torch.softmax(s / t, dim=0)


def inverted_softmax_v2t(sim: torch.Tensor | np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """Video-to-text inverted softmax (transductive) on [C, V] captions x videos, returning [C, V].

    S'_ij = exp(S_ij / t) / sum_k exp(S_ik / t): each caption's row normalised over all videos.
    Rank each column (video) of the result over captions.
    """
    s = _as_matrix(sim, "sim")
    t = _check_temperature(temperature)
    return torch.softmax(s / t, dim=1)
