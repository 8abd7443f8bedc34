"""What every backbone gives the rest of the pipeline.

A backbone turns frames into frame features [N, D] and patch tokens [N, P, D], and captions into
sentence features [B, D] and word tokens [B, L, D] with a mask. Heads (vtr_core.methods) only
ever see these tensors, so a head works unchanged on either backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class FrameFeatures:
    frame: torch.Tensor  # float32 [N, D]
    patches: torch.Tensor | None  # float32 [N, P, D], None when the architecture has no patch tokens
    # float32 [N, R]: the image tower's pooled features before they were mapped into the joint
    # space (lite: the 1,280 EfficientNet channels ConSE reduces to ten class names). Heads learn
    # a projection of them; None when the backbone offers none (raw_dim 0).
    raw: torch.Tensor | None = None


@dataclass
class TextFeatures:
    sentence: torch.Tensor  # float32 [B, D]
    word_tokens: torch.Tensor  # float32 [B, L, D]
    word_mask: torch.Tensor  # bool [B, L]: True where a real word piece sits (no padding, no specials)
    tokens: list[list[str]] = field(default_factory=list)  # word pieces, aligned with word_tokens
    texts: list[str] = field(default_factory=list)  # the cleaned captions themselves

    def __len__(self) -> int:
        return self.sentence.shape[0]

    def select(self, rows) -> "TextFeatures":
        """The features of some captions (rows: indices), as float32."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        pick = rows.tolist()
        return TextFeatures(
            sentence=self.sentence[rows].float(),
            word_tokens=self.word_tokens[rows].float(),
            word_mask=self.word_mask[rows],
            tokens=[self.tokens[i] for i in pick] if self.tokens else [],
            texts=[self.texts[i] for i in pick] if self.texts else [],
        )

    def to(self, device: torch.device) -> "TextFeatures":
        return TextFeatures(self.sentence.to(device), self.word_tokens.to(device), self.word_mask.to(device),
                            self.tokens, self.texts)


@runtime_checkable
class Backbone(Protocol):
    """The contract every backbone keeps; see `create_backbone` for how one is named."""

    spec: str  # how to build it again, e.g. "lite" or "clip:ViT-B-32/openai"
    id: str  # what its features depend on (weights fingerprint included); stored in indexes
    frames_id: str  # what its frame features alone depend on: the id, unless only the text side was tuned
    embed_dim: int
    raw_dim: int  # width of FrameFeatures.raw, 0 when the backbone has none
    patch_grid: tuple[int, int] | None
    device: torch.device
    # Whether end-to-end fine-tuning (vtr_core.training.fine_tune) may train its weights together
    # with a head. A backbone that declares True also offers trainable() (the module to train),
    # forward_pixels() and forward_text() (differentiable, on its device), save_weights(),
    # image_size, mean and std, as the open_clip backbone does; the lite backbone declares False.
    trains_end_to_end: bool

    # patch_dtype: float16 halves the patch tokens' copy from a GPU (the index stores float16)
    def encode_frames(self, frames: np.ndarray, patch_dtype: torch.dtype = torch.float32) -> FrameFeatures: ...

    def encode_text(self, texts: list[str]) -> TextFeatures: ...


def concat_text_features(parts: list[TextFeatures]) -> TextFeatures:
    """Join batches whose word-token lengths differ by padding to the longest."""
    length = max(p.word_tokens.shape[1] for p in parts)

    def pad(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, length - x.shape[1])) if x.dim() == 3 else F.pad(x, (0, length - x.shape[1]))

    return TextFeatures(
        sentence=torch.cat([p.sentence for p in parts]),
        word_tokens=torch.cat([pad(p.word_tokens) for p in parts]),
        word_mask=torch.cat([pad(p.word_mask) for p in parts]),
        tokens=[t + [""] * (length - len(t)) for p in parts for t in p.tokens],
        texts=[t for p in parts for t in p.texts],
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        from vtr_core.errors import BackboneError

        raise BackboneError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return torch.device(device)


def autocast(device: torch.device):
    """Half precision on CUDA (as the papers train), exact float32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def frames_to_tensor(
    frames: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised float [N, 3, size, size]: shorter side to `size`, centre crop.

    Done on tensors in one batch (on the GPU when there is one) rather than image by image.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
    height, width = x.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[:, :, top : top + size, left : left + size].clamp_(0.0, 1.0)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t
