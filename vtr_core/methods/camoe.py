"""CAMoE (Cheng et al., 2021): action, entity and scene experts under one query gate, with DSL.

The caption is split by word class (vtr_core.methods.word_classes: verbs -> action text, nouns -> entity words);
each expert aligns its part of the caption with its view of the video:
- action: mean of the verbs' token features vs. the temporal encoder's pooled video;
- entity: for each noun, its best-matching frame; averaged over nouns;
- scene: the sentence vs. the mean of the frames.
A softmax gate computed from the sentence (zero-initialised, so uniform before training) mixes
the three. Training uses the Dual Softmax Loss on the fused score plus 1/3 of it on each stream
(docs/METHODS.md §2; the expert internals are reconstructions, documented there).
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
from vtr_core.methods.explanation import (
    AlignmentsPanel,
    Explanation,
    FramesPanel,
    GatesPanel,
)
from vtr_core.methods.losses import dual_softmax_loss
from vtr_core.methods.word_pieces import role_masks

STREAMS = ("action", "entity", "scene")
PAIR_CHUNK_ELEMENTS = 1 << 25


@dataclass
class CAMoEConfig(HeadConfig):
    dsl_temperature: float = 1000.0  # on logit-scaled scores (released default)
    stream_loss_weight: float = 1.0 / 3.0
    attention_temperature: float = 0.03
    rerank_top_k: int = 200


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.float().unsqueeze(-1)
    return (tokens * weights).sum(-2) / weights.sum(-2).clamp(min=1.0)


class CAMoE(RetrievalHead):
    name = "camoe"
    config_class = CAMoEConfig
    uses_temporal_encoder = True

    def build(self) -> None:
        self.gate = nn.Linear(self.embed_dim, len(STREAMS))
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    # -- states --------------------------------------------------------------------------------
    def video_state(self, frames: torch.Tensor, patches: torch.Tensor | None,
                    raw: torch.Tensor | None = None) -> State:
        adapted = self.adapt_frames(frames.float(), raw)
        normalised = F.normalize(adapted, dim=-1)
        action = F.normalize(F.normalize(self.temporal(adapted), dim=-1).mean(-2), dim=-1)
        scene = F.normalize(normalised.mean(-2), dim=-1)
        return {"coarse": scene, "frames": normalised, "action": action, "scene": scene}

    def text_state(self, text: TextFeatures) -> State:
        sentence, words = self.adapt_text(text)
        sentence = F.normalize(sentence, dim=-1)
        words = F.normalize(words, dim=-1)
        verb_mask, noun_mask = role_masks(text.texts, text.tokens)
        verb_mask = verb_mask[:, : words.shape[1]].to(words.device) & text.word_mask.to(words.device)
        noun_mask = noun_mask[:, : words.shape[1]].to(words.device) & text.word_mask.to(words.device)
        has_verb = verb_mask.any(-1, keepdim=True)
        action_text = torch.where(has_verb, F.normalize(masked_mean(words, verb_mask), dim=-1), sentence)
        return {
            "coarse": sentence,
            "sentence": sentence,
            "action": action_text,
            "words": words,
            "noun_mask": noun_mask,
            "gate": torch.softmax(self.gate(sentence), dim=-1),
        }

    # -- similarity terms ----------------------------------------------------------------------
    def _entity(self, queries: State, videos: State) -> torch.Tensor:
        """mean over nouns n of max_i cos(w_n, f_i); the scene score when a caption has no noun."""
        words, mask = queries["words"], queries["noun_mask"]
        longest = int(mask.sum(-1).max()) if mask.numel() else 0
        if longest == 0:
            return queries["sentence"] @ videos["scene"].T
        # compact the nouns of each query to the front: [Q, N, D] with N = most nouns in a query
        order = torch.argsort(mask.int(), dim=-1, descending=True, stable=True)[:, :longest]
        nouns = torch.gather(words, 1, order.unsqueeze(-1).expand(-1, -1, words.shape[-1]))
        noun_mask = torch.gather(mask, 1, order).float()
        frames = videos["frames"]
        chunk = max(1, PAIR_CHUNK_ELEMENTS // max(1, nouns.shape[0] * longest * frames.shape[1]))
        parts = []
        for start in range(0, frames.shape[0], chunk):
            best = torch.einsum("qnd,vtd->qvnt", nouns, frames[start : start + chunk]).max(-1).values
            parts.append((best * noun_mask[:, None]).sum(-1) / noun_mask.sum(-1, keepdim=True).clamp(min=1))
        entity = torch.cat(parts, dim=1)
        no_noun = noun_mask.sum(-1, keepdim=True) == 0
        return torch.where(no_noun, queries["sentence"] @ videos["scene"].T, entity)

    def similarity_terms(self, queries: State, videos: State) -> dict[str, torch.Tensor]:
        return {
            "action": queries["action"] @ videos["action"].T,
            "entity": self._entity(queries, videos),
            "scene": queries["sentence"] @ videos["scene"].T,
        }

    def term_weights(self, queries: State) -> dict[str, torch.Tensor]:
        return {name: queries["gate"][:, k : k + 1] for k, name in enumerate(STREAMS)}

    # -- training ------------------------------------------------------------------------------
    def loss_from_states(self, queries: State, videos: State, text: TextFeatures):
        c = self.config
        terms = self.similarity_terms(queries, videos)
        weights = self.term_weights(queries)
        fused = sum(weights[name] * terms[name] for name in STREAMS)
        loss_fused = dual_softmax_loss(self.scale * fused, c.dsl_temperature)
        loss_streams = sum(dual_softmax_loss(self.scale * terms[name], c.dsl_temperature) for name in STREAMS)
        loss = loss_fused + c.stream_loss_weight * loss_streams
        return loss, {"loss": loss.item(), "fused": loss_fused.item(), "streams": loss_streams.item()}

    # -- explanation ---------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, query: State, video: State, text: TextFeatures | None = None) -> Explanation:
        explanation = super().explain(query, video)
        gates = {name: float(query["gate"][0, k]) for k, name in enumerate(STREAMS)}
        frames = video["frames"][0]
        relevance = frames @ query["sentence"][0]
        explanation.panels.append(FramesPanel(
            {"attention": torch.softmax(relevance / self.config.attention_temperature, -1).tolist()}))
        alignments = []
        positions = torch.nonzero(query["noun_mask"][0]).flatten().tolist()
        for position in positions:
            cosines = frames @ query["words"][0, position]
            word = text.tokens[0][position] if text is not None and text.tokens else str(position)
            alignments.append({"word": word, "position": position, "frame": int(cosines.argmax()),
                               "cosine": round(float(cosines.max()), 4)})
        explanation.panels.append(GatesPanel(gates, {name: gates[name] * explanation.terms[name] for name in STREAMS}))
        explanation.panels.append(AlignmentsPanel(alignments, title="noun alignments"))
        return explanation
