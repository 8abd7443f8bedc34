"""EERCF (Tian et al., AAAI 2024): coarse recall, then a fine re-rank of the top-k only.

Stage 1 scores every video with one inner product S_v = t^T G v (faiss). Stage 2 re-ranks the k
best with weak frame and patch terms (text-gated score pooling) and the text-gated interaction
block (TIB): the query picks frames by softmax(t^T f_i / 0.1) and the temporal encoder's outputs
of those frames form a query-specific video vector. Candidates get +100 so they stay above every
non-candidate, which keeps its coarse score. Constants follow the released code (docs/METHODS.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods.base import (
    HeadConfig,
    RetrievalHead,
    State,
)
from vtr_core.methods.explanation import Explanation, FramesPanel, PatchesPanel
from vtr_core.methods.losses import pearson_constraint, symmetric_cross_entropy

# Elements of the [Q, V_chunk, T*P] patch-score tensor built at once when scoring all pairs.
PAIR_CHUNK_ELEMENTS = 1 << 25


@dataclass
class EERCFConfig(HeadConfig):
    num_frames: int = 12
    weak_temperature: float = 0.01  # frame and patch score pooling
    strong_temperature: float = 0.1  # TIB frame selection
    attention_temperature: float = 0.03  # frame attention shown in explanations
    patch_map_temperature: float = 0.1  # text-conditioned patch heat map
    rerank_weights: tuple[float, float, float, float] = (0.5, 0.8, 0.2, 0.2)  # S_v, S_wf, S_sf, S_wp
    weak_loss_weights: tuple[float, float, float] = (0.5, 0.5, 0.05)  # S_v, S_wf, S_wp
    weak_weight: float = 0.8
    strong_weight: float = 0.2
    pearson_weight: float = 0.001
    pearson_diagonal: float = 0.14
    pearson_off_diagonal: float = 0.0
    freeze_identity: bool = False  # keep G and A at the identity (the paper's "parameter-free" TIB)
    rerank_top_k: int = 50


class EERCF(RetrievalHead):
    name = "eercf"
    config_class = EERCFConfig
    uses_temporal_encoder = True
    uses_patches = True  # S_wp, the word-patch term
    eval_rerank_top_k = 50

    def build(self) -> None:
        c = self.config
        self.G = nn.Parameter(torch.eye(self.embed_dim), requires_grad=not c.freeze_identity)
        self.A = nn.Parameter(torch.eye(c.num_frames), requires_grad=not c.freeze_identity)

    # -- states --------------------------------------------------------------------------------
    def video_state(self, frames: torch.Tensor, patches: torch.Tensor | None,
                    raw: torch.Tensor | None = None) -> State:
        adapted = self.adapt_frames(frames.float(), raw)
        untemporal = F.normalize(adapted, dim=-1)  # gating uses frames before the TE (code's choice)
        temporal = F.normalize(self.temporal(adapted), dim=-1)  # aggregation uses TE outputs
        state = {
            "coarse": F.normalize(temporal.mean(-2), dim=-1),
            "frames": untemporal,
            "temporal": temporal,
            "gram": temporal @ temporal.transpose(-1, -2),  # [V, T, T]: norms of TIB mixtures
        }
        if patches is not None:
            state["patches"] = F.normalize(self.adapt_frames(patches.float()), dim=-1).flatten(1, 2)
        return state

    def text_state(self, text: TextFeatures) -> State:
        sentence, _ = self.adapt_text(text)
        t = F.normalize(sentence, dim=-1)
        return {"sentence": t, "coarse": t @ self.G}  # (t^T G) . v == t^T G v

    # -- similarity terms ----------------------------------------------------------------------
    def _weak_frame(self, frame_scores: torch.Tensor) -> torch.Tensor:
        """S_wf = sum_i a_i s_i with a = softmax(s / 0.01) A."""
        attention = torch.softmax(frame_scores / self.config.weak_temperature, dim=-1) @ self.A
        return (attention * frame_scores).sum(-1)

    def _strong_frame(self, t: torch.Tensor, videos: State, frame_scores: torch.Tensor) -> torch.Tensor:
        """TIB for every pair: t^T norm(sum_i w_i f'_i), w = softmax(t^T f_i / 0.1), without [Q, V, D]."""
        weights = torch.softmax(frame_scores / self.config.strong_temperature, dim=-1)  # [Q, V, T]
        temporal_scores = torch.einsum("qd,vtd->qvt", t, videos["temporal"])
        numerator = (weights * temporal_scores).sum(-1)
        squared_norm = torch.einsum("qvt,vts,qvs->qv", weights, videos["gram"], weights)
        return numerator / squared_norm.clamp(min=1e-12).sqrt()

    def _weak_patch(self, t: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        chunk = max(1, PAIR_CHUNK_ELEMENTS // max(1, t.shape[0] * patches.shape[1]))
        parts = []
        for start in range(0, patches.shape[0], chunk):
            scores = torch.einsum("qd,vnd->qvn", t, patches[start : start + chunk])
            parts.append((torch.softmax(scores / self.config.weak_temperature, -1) * scores).sum(-1))
        return torch.cat(parts, dim=1)

    def similarity_terms(self, queries: State, videos: State) -> dict[str, torch.Tensor]:
        t = queries["sentence"]
        frame_scores = torch.einsum("qd,vtd->qvt", t, videos["frames"])
        terms = {
            "S_v": queries["coarse"] @ videos["coarse"].T,
            "S_wf": self._weak_frame(frame_scores),
            "S_sf": self._strong_frame(t, videos, frame_scores),
        }
        if "patches" in videos:
            terms["S_wp"] = self._weak_patch(t, videos["patches"])
        return terms

    def term_weights(self, queries: State) -> dict[str, float]:
        return dict(zip(("S_v", "S_wf", "S_sf", "S_wp"), self.config.rerank_weights))

    # -- training ------------------------------------------------------------------------------
    def loss_from_states(self, queries: State, videos: State, text: TextFeatures):
        c = self.config
        t = queries["sentence"]
        frame_scores = torch.einsum("qd,vtd->qvt", t, videos["frames"])
        S_v = queries["coarse"] @ videos["coarse"].T
        S_wf = self._weak_frame(frame_scores)
        weak = c.weak_loss_weights[0] * S_v + c.weak_loss_weights[1] * S_wf
        if "patches" in videos:
            weak = weak + c.weak_loss_weights[2] * self._weak_patch(t, videos["patches"])
        # TIB in training: each video is conditioned on its own caption only (stop-gradient
        # weights), and that query-specific vector is scored against every caption.
        own = torch.softmax(frame_scores.diagonal(dim1=0, dim2=1).T / c.strong_temperature, dim=-1).detach()
        conditioned = F.normalize((own.unsqueeze(-1) * videos["temporal"]).sum(1), dim=-1)  # [B, D]
        S_sf = t @ conditioned.T
        loss_weak = symmetric_cross_entropy(self.scale * weak)
        loss_strong = symmetric_cross_entropy(self.scale * S_sf)
        loss_pearson = pearson_constraint(t, videos["coarse"], c.pearson_diagonal, c.pearson_off_diagonal) + \
            pearson_constraint(t, conditioned, c.pearson_diagonal, c.pearson_off_diagonal)
        loss = c.weak_weight * loss_weak + c.strong_weight * loss_strong + c.pearson_weight * loss_pearson
        return loss, {"loss": loss.item(), "weak": loss_weak.item(), "strong": loss_strong.item(),
                      "pearson": loss_pearson.item()}

    # -- explanation ---------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, query: State, video: State, text: TextFeatures | None = None) -> Explanation:
        c = self.config
        explanation = super().explain(query, video)
        t = query["sentence"][0]
        frame_scores = video["frames"][0] @ t  # [T]
        explanation.panels.append(FramesPanel({
            "attention": torch.softmax(frame_scores / c.attention_temperature, -1).tolist(),
            "tib weights": torch.softmax(frame_scores / c.strong_temperature, -1).tolist(),
            "weak frame weights": (torch.softmax(frame_scores / c.weak_temperature, -1) @ self.A).tolist(),
        }))
        if "patches" in video:
            T = video["frames"].shape[1]
            patch_scores = (video["patches"][0] @ t).view(T, -1)
            explanation.panels.append(PatchesPanel(torch.softmax(patch_scores / c.patch_map_temperature, -1).tolist()))
        return explanation
