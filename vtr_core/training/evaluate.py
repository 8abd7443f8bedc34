"""Evaluation: R@1/5/10, median and mean rank, both directions, with and without DSL.

Text-to-video ranks the videos for each query (MSR-VTT: the JSFUSION caption of each video).
Video-to-text ranks caption groups for each video using every caption (CLIP4Clip's multi-caption
rule, vtr_core.training.metrics). The dual-softmax row is transductive: it revises the score matrix of the
whole query set at once (vtr_core.retrieval.dsl), so it is reported as a separate, labelled row.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods import (
    RetrievalHead,
    text_states,
    video_states,
)
from vtr_core.retrieval.dsl import (
    dsl_revise,
    dsl_revise_v2t,
    inverted_softmax,
    inverted_softmax_v2t,
)
from vtr_core.retrieval.ranking import rank_order, score_matrix
from vtr_core.training.metrics import text_to_video_metrics, video_to_text_metrics

# transductive revisers of a whole score matrix: (text-to-video, video-to-text)
REVISERS = {"dsl": (dsl_revise, dsl_revise_v2t), "inverted": (inverted_softmax, inverted_softmax_v2t)}


@dataclass
class EvalResult:
    """One evaluation; `as_record(dsl)` gives the JSON object of one row."""

    method: str
    backbone: str
    split: str
    head_source: str
    rerank_top_k: int | None
    dsl_temperature: float
    plain: dict = field(default_factory=dict)  # {"t2v": {...}, "v2t": {...}}
    dsl: dict = field(default_factory=dict)  # the revised row (dual softmax, or inverted softmax)
    reviser: str = "dsl"
    seconds: float = 0.0

    def as_record(self, with_dsl: bool) -> dict:
        row = self.dsl if with_dsl else self.plain
        return {
            "method": self.method, "backbone": self.backbone, "split": self.split, "dsl": with_dsl,
            "transductive": with_dsl, "head": self.head_source, "rerank_top_k": self.rerank_top_k,
            "reviser": self.reviser if with_dsl else None,
            "dsl_temperature": self.dsl_temperature if with_dsl else None, "t2v": row["t2v"], "v2t": row["v2t"],
            "seconds": round(self.seconds, 2),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def _on_cpu(scores_and_mask: tuple[torch.Tensor, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
    scores, mask = scores_and_mask
    return scores.cpu(), mask.cpu() if mask is not None else None


@torch.no_grad()
def evaluate_head(
    head: RetrievalHead,
    frames: torch.Tensor,
    patches: torch.Tensor | None,
    queries: TextFeatures,
    query_video: torch.Tensor,
    captions: TextFeatures,
    caption_video: torch.Tensor,
    rerank_top_k: int | None = None,
    dsl_temperature: float = 1.0,
    method: str = "",
    backbone: str = "",
    split: str = "",
    head_source: str = "",
    reviser: str = "dsl",
    raw: torch.Tensor | None = None,
) -> EvalResult:
    """Both directions, plain and revised by `reviser` (temperature on logit-scaled scores)."""
    started = time.perf_counter()
    head.eval()
    videos = video_states(head, frames, patches, raw=raw)
    scale = float(head.scale)
    revise_t2v, revise_v2t = REVISERS[reviser]
    result = EvalResult(method or head.name, backbone, split, head_source, rerank_top_k, dsl_temperature,
                        reviser=reviser)

    t2v_scores, t2v_mask = _on_cpu(score_matrix(head, text_states(head, queries), videos, rerank_top_k))
    v2t_scores, v2t_mask = _on_cpu(score_matrix(head, text_states(head, captions), videos, rerank_top_k))
    result.plain = {
        "t2v": text_to_video_metrics(rank_order(t2v_scores, t2v_mask), query_video),
        "v2t": video_to_text_metrics(rank_order(v2t_scores, v2t_mask), caption_video),
    }
    result.dsl = {
        "t2v": text_to_video_metrics(rank_order(revise_t2v(scale * t2v_scores, dsl_temperature), t2v_mask), query_video),
        "v2t": video_to_text_metrics(rank_order(revise_v2t(scale * v2t_scores, dsl_temperature), v2t_mask),
                                     caption_video),
    }
    result.seconds = time.perf_counter() - started
    return result
