"""Heads by name, as the papers name them: the registry, configs with overrides, untrained heads."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from vtr_core.backbones import Backbone
from vtr_core.errors import VtrError
from vtr_core.methods.base import HeadConfig, RetrievalHead
from vtr_core.methods.camoe import CAMoE
from vtr_core.methods.eercf import EERCF
from vtr_core.methods.meanp import MeanPooling
from vtr_core.methods.s3ma import S3MA
from vtr_core.methods.temporal import RELEASED_TEMPORAL, clip_block_names

METHODS: dict[str, type[RetrievalHead]] = {cls.name: cls for cls in (MeanPooling, S3MA, EERCF, CAMoE)}


def method_class(name: str) -> type[RetrievalHead]:
    if name not in METHODS:
        raise VtrError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
    return METHODS[name]


def make_config(name: str, num_frames: int = 12, **overrides: Any) -> HeadConfig:
    config_class = method_class(name).config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(overrides) - fields
    if unknown:
        raise VtrError(f"method {name} has no setting {', '.join(sorted(unknown))}")
    if "num_frames" in fields:
        overrides.setdefault("num_frames", num_frames)
    return config_class(**overrides)


def create_head(
    name: str,
    backbone: Backbone,
    num_frames: int = 12,
    corpus: list[str] | None = None,
    seed: int = 0,
    for_training: bool = False,
    **overrides: Any,
) -> RetrievalHead:
    """An untrained head; s3ma clusters the words of `corpus` (captions) into its concept bank.

    `for_training` on a backbone with CLIP's text layers (`text_layers`): a temporal encoder
    starts from them in the released form, as CLIP4Clip and the papers train it. Otherwise (lite,
    or a zero-shot head) it starts at zero, so the untrained head is its parameter-free form."""
    torch.manual_seed(seed)
    config = make_config(name, num_frames, **overrides)
    prior = temporal_prior(backbone, name, config) if for_training else None
    if prior is not None:  # CLIP's text blocks: width // 64 heads, one position per text token
        released = {**RELEASED_TEMPORAL, "temporal_positions": prior["positional_embedding"].shape[0],
                    "temporal_heads": max(1, backbone.embed_dim // 64)}
        config = make_config(name, num_frames, **{**released, **overrides})
    head = method_class(name)(backbone.embed_dim, config, raw_dim=backbone.raw_dim)
    if prior is not None:
        start_temporal_from(head, prior)
    head.prepare(backbone, corpus, seed)
    return head.eval()


def temporal_prior(backbone: Backbone, name: str, config: HeadConfig) -> dict[str, torch.Tensor] | None:
    """The backbone's text layers a temporal encoder of this head would start from, or None."""
    uses_temporal = method_class(name).uses_temporal_encoder or getattr(config, "sequence_encoder", False)
    text_layers = getattr(backbone, "text_layers", None)
    return text_layers(config.temporal_layers) if uses_temporal and text_layers is not None else None


def start_temporal_from(head: RetrievalHead, prior: dict[str, torch.Tensor]) -> None:
    """Copy CLIP's text position table and first blocks into the head's temporal encoder."""
    names = clip_block_names(head.config.temporal_layers, "transformer.resblocks.", "temporal.")
    names["positional_embedding"] = "temporal.position"
    state = head.state_dict()
    head.load_state_dict({**state, **{ours: prior[theirs].to(state[ours].dtype) for theirs, ours in names.items()}})
