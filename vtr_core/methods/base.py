"""The one interface every retrieval head keeps, and the parts heads share.

A head turns stored backbone features into per-video and per-query *states* (dicts of tensors,
computed once: videos at index time, queries at search time), scores states against each other,
explains one (query, video) pair, and defines its training loss. Every state holds a `coarse`
vector: the inner product of a query's and a video's `coarse` vectors is the head's stage-1 score,
which faiss searches; `similarity` is the head's full score. The index, the evaluator and the app
only call this interface, so no caller special-cases a method.

Frozen-backbone training: the papers fine-tune CLIP at lr 1e-7 with new parameters at 1e-4. Here
features are cached, so a zero-initialised residual linear map on each tower (`FeatureAdapter`)
stands in for backbone fine-tuning; at initialisation it is the identity, which keeps every
untrained head equal to its parameter-free form (zero-shot). Where a backbone also hands over its
raw features (what it had before mapping into the joint space), a zero-initialised projection of
them is added as well: the nearest thing to fine-tuning the backbone's last layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods.explanation import Explanation
from vtr_core.methods.temporal import TemporalEncoder

State = dict[str, torch.Tensor]
MAX_LOGIT_SCALE = 100.0


def softmax_pool(scores: torch.Tensor, temperature: float, dim: int = -1) -> torch.Tensor:
    """sum_i softmax(s / tau)_i * s_i: a soft maximum that keeps gradients for every element."""
    return (torch.softmax(scores / temperature, dim=dim) * scores).sum(dim)


class ResidualLinear(nn.Module):
    """x + W x + b with W, b = 0 at start: exactly the identity until trained."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(x)


class RawProjection(nn.Module):
    """W LayerNorm(r), W = 0 at start: what the joint space dropped, learned back in."""

    def __init__(self, raw_dim: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(raw_dim, dim, bias=False)
        nn.init.zeros_(self.linear.weight)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.linear(F.layer_norm(raw.float(), raw.shape[-1:]))


class FeatureAdapter(nn.Module):
    """Learnable stand-in for fine-tuning the frozen towers (see module docstring)."""

    def __init__(self, dim: int, raw_dim: int = 0):
        super().__init__()
        self.visual = ResidualLinear(dim)
        self.text = ResidualLinear(dim)
        self.visual_raw = RawProjection(raw_dim, dim) if raw_dim else None


@dataclass
class HeadConfig:
    """Settings every head has; each method extends it with its own (docs/METHODS.md values)."""

    temporal_layers: int = 4
    # the temporal encoder's form (methods/temporal.py): ours by default; RELEASED_TEMPORAL for heads
    # imported from the papers' code or trained on a CLIP backbone
    temporal_form: str = "zero-output"
    temporal_activation: str = "gelu"
    temporal_norm_eps: float = 1e-5
    temporal_dropout: float = 0.1
    temporal_positions: int = 64
    temporal_heads: int = 8
    init_logit_scale: float = math.log(1 / 0.07)
    rerank_top_k: int = 0  # stage-2 candidates in search; 0: the coarse score is final


class RetrievalHead(nn.Module):
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = HeadConfig
    # Evaluation scores all pairs with `similarity` unless a head follows its paper's two-stage
    # protocol (eercf): then the evaluator re-ranks only this many coarse candidates.
    eval_rerank_top_k: ClassVar[int | None] = None
    # Heads that read frames in order get CLIP4Clip's temporal encoder as `self.temporal`.
    uses_temporal_encoder: ClassVar[bool] = False
    uses_patches: ClassVar[bool] = False  # video_state reads patch tokens (else they may be left out)

    def __init__(self, embed_dim: int, config: HeadConfig | None = None, raw_dim: int = 0):
        super().__init__()
        self.embed_dim, self.raw_dim = embed_dim, raw_dim
        self.config = config or self.config_class()
        self.adapter = FeatureAdapter(embed_dim, raw_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(self.config.init_logit_scale)))
        if self.uses_temporal_encoder or getattr(self.config, "sequence_encoder", False):
            c = self.config
            self.temporal = TemporalEncoder(embed_dim, layers=c.temporal_layers, heads=c.temporal_heads,
                                            positions=c.temporal_positions,
                                            dropout=c.temporal_dropout, form=c.temporal_form,
                                            activation=c.temporal_activation, norm_eps=c.temporal_norm_eps)
        self.build()

    def build(self) -> None:
        """The head's own parameters, after the shared ones (adapters, logit scale, temporal encoder)."""

    # -- shared helpers ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the head's parameters live: callers bring features there."""
        return self.logit_scale.device

    @property
    def num_frames(self) -> int | None:
        """Frames per video the head is built for (heads with positions over frames), else None."""
        return getattr(self.config, "num_frames", None)

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def adapt_frames(self, frames: torch.Tensor, raw: torch.Tensor | None = None) -> torch.Tensor:
        """Adapted frame (or patch) features; `raw` [..., R] per frame where the backbone has it."""
        adapted = self.adapter.visual(frames)
        if raw is not None and self.adapter.visual_raw is not None:
            adapted = adapted + self.adapter.visual_raw(raw)
        return adapted

    def adapt_text(self, text: TextFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapted (sentence [B, D], word tokens [B, L, D])."""
        return self.adapter.text(text.sentence.float()), self.adapter.text(text.word_tokens.float())

    # -- the interface -------------------------------------------------------------------------
    def video_state(self, frames: torch.Tensor, patches: torch.Tensor | None,
                    raw: torch.Tensor | None = None) -> State:
        """frames [V, T, D], patches [V, T, P, D] or None, raw [V, T, R] or None."""
        raise NotImplementedError

    def text_state(self, text: TextFeatures) -> State:
        raise NotImplementedError

    def similarity_terms(self, queries: State, videos: State) -> dict[str, torch.Tensor]:
        """Each part of the score, all pairs: name -> [Q, V], cosine scale."""
        raise NotImplementedError

    def term_weights(self, queries: State) -> dict[str, torch.Tensor]:
        """Weight of each term: a float, or a [Q, 1] tensor when it depends on the query (gates)."""
        raise NotImplementedError

    def similarity(self, queries: State, videos: State) -> torch.Tensor:
        """The head's full score for all pairs [Q, V], cosine scale."""
        terms = self.similarity_terms(queries, videos)
        weights = self.term_weights(queries)
        return sum(weights[name] * value for name, value in terms.items() if name in weights)

    def coarse_similarity(self, queries: State, videos: State) -> torch.Tensor:
        return queries["coarse"] @ videos["coarse"].T

    def loss(self, text: TextFeatures, frames: torch.Tensor, patches: torch.Tensor | None,
             raw: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch of matching (caption b, video b) pairs."""
        return self.loss_from_states(self.text_state(text), self.video_state(frames, patches, raw), text)

    def loss_from_states(self, queries: State, videos: State, text: TextFeatures) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss given the batch's states (split out so states can be gathered across processes)."""
        raise NotImplementedError

    @torch.no_grad()
    def explain(self, query: State, video: State, text: TextFeatures | None = None) -> Explanation:
        """The parts of one (query, video) score; states hold one row each; `text` labels words."""
        terms = {name: float(value[0, 0]) for name, value in self.similarity_terms(query, video).items()}
        weights = {name: float(torch.as_tensor(w).reshape(-1)[0]) for name, w in self.term_weights(query).items()}
        score = sum(weights[n] * terms[n] for n in weights if n in terms)
        return Explanation(method=self.name, score=score, terms=terms, weights=weights)

    # -- set-up from outside --------------------------------------------------------------------
    def prepare(self, backbone: Any, corpus: list[str] | None, seed: int = 0) -> None:
        """Whatever an untrained head derives from its backbone (s3ma: the concept bank from the
        words of `corpus`); nothing by default."""

    def fit_state_shapes(self, state: dict[str, torch.Tensor]) -> None:
        """Resize parameters whose size a checkpoint decides (s3ma: the number of concepts) before
        its weights load; nothing by default."""

    # -- persistence ---------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Non-tensor data a checkpoint must carry (e.g. a concept bank's vocabulary)."""
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        pass
