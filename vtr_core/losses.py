"""Training losses shared by the heads (the Dual Softmax Loss lives in dsl.py)."""

from __future__ import annotations

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
