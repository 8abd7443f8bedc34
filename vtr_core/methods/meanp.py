"""CLIP4Clip mean pooling: a video is the mean of its L2-normalised frame features.

The baseline every method is measured against: one vector per video, one per query, cosine.
With `sequence_encoder` the frames first go through the temporal encoder, which is CLIP4Clip's
"seqTransf" similarity (heads imported from CLIP4Clip checkpoints trained that way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods.base import HeadConfig, RetrievalHead, State
from vtr_core.methods.explanation import Explanation, FramesPanel
from vtr_core.methods.losses import symmetric_cross_entropy


def video_embedding(frame_features: torch.Tensor | np.ndarray) -> torch.Tensor:
    """[..., T, D] frame features -> [..., D] unit vectors: norm(mean_t norm(f_t))."""
    frames = torch.as_tensor(frame_features, dtype=torch.float32)
    return F.normalize(F.normalize(frames, dim=-1).mean(-2), dim=-1)


def query_embedding(sentence_features: torch.Tensor) -> torch.Tensor:
    return F.normalize(sentence_features.float(), dim=-1)


@dataclass
class MeanPoolingConfig(HeadConfig):
    sequence_encoder: bool = False  # CLIP4Clip seqTransf: the temporal encoder before pooling


class MeanPooling(RetrievalHead):
    name = "meanp"
    config_class = MeanPoolingConfig

    def video_state(self, frames: torch.Tensor, patches: torch.Tensor | None,
                    raw: torch.Tensor | None = None) -> State:
        frames = self.adapt_frames(frames.float(), raw)
        if self.config.sequence_encoder:
            frames = self.temporal(frames)
        frames = F.normalize(frames, dim=-1)
        return {"coarse": video_embedding(frames), "frames": frames}

    def text_state(self, text: TextFeatures) -> State:
        sentence, _ = self.adapt_text(text)
        return {"coarse": query_embedding(sentence)}

    def similarity_terms(self, queries: State, videos: State) -> dict[str, torch.Tensor]:
        return {"mean": self.coarse_similarity(queries, videos)}

    def term_weights(self, queries: State) -> dict[str, float]:
        return {"mean": 1.0}

    def loss_from_states(self, queries: State, videos: State, text: TextFeatures):
        similarity = self.similarity(queries, videos)
        loss = symmetric_cross_entropy(self.scale * similarity)
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def explain(self, query: State, video: State, text: TextFeatures | None = None) -> Explanation:
        explanation = super().explain(query, video)
        # how much each frame agrees with the query (mean pooling weighs all frames equally)
        per_frame = (video["frames"][0] @ query["coarse"][0]).tolist()
        explanation.panels.append(FramesPanel({"attention": [1.0 / len(per_frame)] * len(per_frame),
                                               "frame similarity": per_frame}))
        return explanation
