"""Backbones: frames -> frame features and patch tokens; captions -> sentence and word tokens.

A backbone is named by a spec string, as open_clip names models and faiss names indexes:
  lite                    the offline backbone (EfficientNet-Lite0 + MiniLM, ConSE)
  lite:PATH               the same with a text tower tuned by `train --end-to-end` (frame features unchanged)
  clip:ARCH/PRETRAINED    open_clip, a pretrained tag or a checkpoint path (see clip.py)
  auto                    clip:ViT-B-32/openai when its weights are on this machine, else lite
"""

from __future__ import annotations

import functools
import logging

import torch

from vtr_core.backbones.base import (
    Backbone,
    FrameFeatures,
    TextFeatures,
    resolve_device,
)
from vtr_core.backbones.clip import DEFAULT_CLIP, cached_weights_path, parse_clip_spec
from vtr_core.errors import BackboneError

__all__ = ["Backbone", "FrameFeatures", "TextFeatures", "create_backbone", "resolve_backbone_spec", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_backbone_spec(spec: str = "auto") -> str:
    """Turn `auto` into a concrete spec; other specs pass through after a syntax check."""
    spec = (spec or "auto").strip()
    if spec == "auto":
        model_name, pretrained = parse_clip_spec(DEFAULT_CLIP)
        return f"clip:{DEFAULT_CLIP}" if cached_weights_path(model_name, pretrained) else "lite"
    if spec == "lite":
        return spec
    if spec.startswith("lite:"):
        if not spec[len("lite:"):]:
            raise BackboneError("lite:PATH needs the path of a tuned text tower")
        return spec
    if spec.startswith("clip:"):
        parse_clip_spec(spec[len("clip:") :])
        return spec
    raise BackboneError(f"unknown backbone {spec!r}: use auto, lite, lite:TEXT_TOWER or clip:ARCH/PRETRAINED_OR_PATH")


@functools.lru_cache(maxsize=4)
def _build(spec: str, device: torch.device) -> Backbone:
    if spec == "lite" or spec.startswith("lite:"):
        from vtr_core.backbones.lite import LiteBackbone

        return LiteBackbone(device, text_tower=spec[len("lite:"):] if spec.startswith("lite:") else None)
    from vtr_core.backbones.clip import ClipBackbone

    return ClipBackbone(spec[len("clip:") :], device)


def create_backbone(spec: str = "auto", device: str | torch.device = "auto") -> Backbone:
    """Build (once per process) the backbone a spec names, on the device asked for."""
    return _build(resolve_backbone_spec(spec), resolve_device(device))
