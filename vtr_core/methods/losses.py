"""Training losses shared by the heads: symmetric InfoNCE, EERCF's Pearson constraint, and CAMoE's
Dual Softmax Loss (DSL), whose prior reweights each text-video logit by a softmax over the other
retrieval direction (docs/METHODS.md §2.4, §7). Its inference form, the transductive reviser, is in
vtr_core.retrieval.dsl.

All softmaxes go through torch.softmax / cross_entropy (max-shifted), so logits of 1e4 scale stay
finite. Score matrices may be torch tensors or numpy arrays; floating dtypes are kept (float64
stays float64, e.g. for gradcheck), anything else becomes float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def symmetric_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """CE_sym(S) = (CE(S) + CE(S^T)) / 2, matches on the diagonal (InfoNCE both ways)."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def pearson_constraint(
    text: torch.Tensor,
    visual: torch.Tensor,
    diagonal_weight: float = 0.14,
    off_diagonal_weight: float = 0.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """EERCF's Pearson constraint between paired text and visual features [B, D].

    Each dimension is standardised over the batch (population std, + eps); C = z_t^T z_v / B is
    the D x D cross-correlation. Matching dimensions are pulled to correlation 1, and optionally
    different dimensions to 0 (weight 0 in the released code).
    """
    batch = text.shape[0]
    z_text = (text - text.mean(0)) / (text.std(0, unbiased=False) + eps)
    z_visual = (visual - visual.mean(0)) / (visual.std(0, unbiased=False) + eps)
    correlation = z_text.T @ z_visual / batch
    diagonal = correlation.diagonal()
    loss = diagonal_weight * ((1 - diagonal) ** 2).sum()
    if off_diagonal_weight:
        loss = loss + off_diagonal_weight * ((correlation**2).sum() - (diagonal**2).sum())
    return loss


def as_score_matrix(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.float()
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D [texts, videos] matrix, got shape {tuple(t.shape)}")
    return t


def check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    return temperature


def dual_softmax_prior(logits: torch.Tensor | np.ndarray, temperature: float) -> torch.Tensor:
    """CAMoE prior Pr = N * softmax over texts (dim 0, within each video's column) of X / temperature.

    Pr_ij = N * exp(X_ij / t) / sum_m exp(X_mj / t), N = number of rows. Differentiable.
    """
    x = as_score_matrix(logits, "logits")
    t = check_temperature(temperature)
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
    x = as_score_matrix(logits, "logits")
    if x.shape[0] != x.shape[1] or x.shape[0] == 0:
        raise ValueError(f"dual_softmax_loss needs a non-empty square batch, got shape {tuple(x.shape)}")
    t = check_temperature(temperature)
    return 0.5 * (_dsl_one_direction(x, t) + _dsl_one_direction(x.T, t))
