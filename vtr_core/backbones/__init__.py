"""Backbones: frames -> frame features and patch tokens; captions -> sentence and word tokens.

A backbone is named by a spec string, as open_clip names models and faiss names indexes:
  lite                    the offline backbone (EfficientNet-Lite0 + MiniLM, ConSE)
  lite0, lite1, lite2     EfficientNet-Lite0/1/2 as TensorFlow trained them (SAME padding, inputs in [-1, 1])
  lite:PATH               any of them with a text tower tuned by `train --end-to-end` (frame features unchanged)
  clip:ARCH/PRETRAINED    open_clip, a pretrained tag or a checkpoint path (see clip.py)
  auto                    clip:ViT-B-32/openai when its weights are on this machine, else the offline
                          backbone the shipped heads were chosen for (OFFLINE_DEFAULT), else lite
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
# chosen on validation (docs/ACCURACY.md, section 5): its text tower ships in precomputed/text_towers
OFFLINE_DEFAULT = "lite0:msrvtt"


def offline_default() -> str:
    """OFFLINE_DEFAULT where its shipped text tower is present, else the plain lite backbone."""
    from vtr_core.resources import shipped_text_towers_dir

    tower, _, name = OFFLINE_DEFAULT.partition(":")
    return OFFLINE_DEFAULT if (shipped_text_towers_dir() / f"{tower}-{name}.pt").is_file() else "lite"


def resolve_backbone_spec(spec: str = "auto") -> str:
    """Turn `auto` into a concrete spec; other specs pass through after a syntax check."""
    spec = (spec or "auto").strip()
    if spec == "auto":
        model_name, pretrained = parse_clip_spec(DEFAULT_CLIP)
        return f"clip:{DEFAULT_CLIP}" if cached_weights_path(model_name, pretrained) else offline_default()
    from vtr_core.backbones.lite import IMAGE_TOWERS

    tower, sep, text_tower = spec.partition(":")
    if tower in IMAGE_TOWERS:
        if sep and not text_tower:
            raise BackboneError(f"{tower}:PATH needs the path of a tuned text tower")
        return spec
    if spec.startswith("clip:"):
        parse_clip_spec(spec[len("clip:") :])
        return spec
    raise BackboneError(f"unknown backbone {spec!r}: use auto, lite, lite0, lite1, lite2, lite:TEXT_TOWER "
                        "or clip:ARCH/PRETRAINED_OR_PATH")


@functools.lru_cache(maxsize=4)
def _build(spec: str, device: torch.device) -> Backbone:
    from vtr_core.backbones.lite import IMAGE_TOWERS, LiteBackbone

    tower, _, text_tower = spec.partition(":")
    if tower in IMAGE_TOWERS:
        return LiteBackbone(device, text_tower=text_tower or None, image_tower=tower)
    from vtr_core.backbones.clip import ClipBackbone

    return ClipBackbone(spec[len("clip:") :], device)


def create_backbone(spec: str = "auto", device: str | torch.device = "auto") -> Backbone:
    """Build (once per process) the backbone a spec names, on the device asked for."""
    return _build(resolve_backbone_spec(spec), resolve_device(device))
