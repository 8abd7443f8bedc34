"""Score revisers used at inference: CAMoE's dual softmax (DSL) and QB-Norm's inverted softmax.

Why: at inference the prior of CAMoE's Dual Softmax Loss (vtr_core.methods.losses) reweights each
text-video score by a softmax over the other retrieval direction, and QB-Norm's inverted softmax
(Bogolin et al., CVPR 2022) does the like; both suppress "hub" videos that are the top hit for
many queries.

Notation: S is an [N, M] matrix, rows = texts (queries), columns = videos.

TRANSDUCTIVE: every reviser here normalises over the WHOLE query set at once. They cannot serve
a single online query, and numbers obtained with them are not comparable with per-query
retrieval; the app and the evaluator label results that use them. No I/O.
"""

from __future__ import annotations

import numpy as np
import torch

from vtr_core.methods.losses import as_score_matrix, check_temperature


def dsl_revise(sim: torch.Tensor | np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """Text-to-video DSL reviser (transductive): S' = S * softmax over texts (dim 0) of S / t.

    Rank each row (text) of the result over videos. The factor N of the training prior is left
    out: it scales every score by the same positive constant, so no ranking changes.
    """
    s = as_score_matrix(sim, "sim")
    t = check_temperature(temperature)
    return s * torch.softmax(s / t, dim=0)


def dsl_revise_v2t(sim: torch.Tensor | np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """Video-to-text DSL reviser (transductive) on [C, V] captions x videos, returning [C, V].

    S' = S * softmax over videos (dim 1) of S / t, i.e. dsl_revise(S.T).T: rank each COLUMN
    (video) of the result over captions (e.g. with metrics.video_to_text_metrics).
    """
    s = as_score_matrix(sim, "sim")
    t = check_temperature(temperature)
    return s * torch.softmax(s / t, dim=1)


def inverted_softmax(sim: torch.Tensor | np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """QB-Norm inverted softmax with the query set as its own bank (transductive), text-to-video.

    S'_ij = exp(S_ij / t) / sum_m exp(S_mj / t): each video's column normalised over all queries.
    Rank each row of the result over videos.
    """
    s = as_score_matrix(sim, "sim")
    t = check_temperature(temperature)
    return torch.softmax(s / t, dim=0)


def inverted_softmax_v2t(sim: torch.Tensor | np.ndarray, temperature: float = 1.0) -> torch.Tensor:
    """Video-to-text inverted softmax (transductive) on [C, V] captions x videos, returning [C, V].

    S'_ij = exp(S_ij / t) / sum_k exp(S_ik / t): each caption's row normalised over all videos.
    Rank each column (video) of the result over captions.
    """
    s = as_score_matrix(sim, "sim")
    t = check_temperature(temperature)
    return torch.softmax(s / t, dim=1)
