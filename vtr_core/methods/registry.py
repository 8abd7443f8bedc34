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
    **overrides: Any,
) -> RetrievalHead:
    """An untrained head; s3ma clusters the words of `corpus` (captions) into its concept bank."""
    torch.manual_seed(seed)
    head = method_class(name)(backbone.embed_dim, make_config(name, num_frames, **overrides), raw_dim=backbone.raw_dim)
    head.prepare(backbone, corpus, seed)
    return head.eval()
