"""The temporal encoder over a video's frame features (CLIP4Clip's "seqTransf"), in two forms.

    own form (heads trained here):  F' = F + Out(Enc(F + pos)),  Out = 0 at start, so F' = F
    released form (CLIP4Clip/EERCF): F' = F + Enc(F + pos)

Enc is a pre-norm transformer over the frames. The released code builds it with QuickGELU,
LayerNorm eps 1e-12, no dropout and a 77-row position table (CLIP's text context); a head imported
from that code, or trained on a CLIP backbone, takes those settings (`RELEASED_TEMPORAL`) so that
its scores are the released model's. Its blocks have the layout of CLIP's text transformer blocks,
which is how CLIP4Clip starts the encoder from CLIP's first text layers (`clip_block_names`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

# the head settings of the released form (HeadConfig field -> value)
RELEASED_TEMPORAL = {"temporal_form": "residual", "temporal_activation": "quick_gelu", "temporal_norm_eps": 1e-12,
                     "temporal_dropout": 0.0, "temporal_positions": 77}
TEMPORAL_FORMS = ("zero-output", "residual")


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's CLIP was trained with."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": "gelu", "quick_gelu": quick_gelu}


class TemporalEncoder(nn.Module):
    """Frames [..., T, D] -> [..., T, D]; see the module docstring for the two forms."""

    def __init__(self, dim: int, layers: int = 4, heads: int = 8, positions: int = 64, dropout: float = 0.1,
                 form: str = "zero-output", activation: str = "gelu", norm_eps: float = 1e-5):
        super().__init__()
        if form not in TEMPORAL_FORMS:
            raise ValueError(f"temporal_form must be one of {', '.join(TEMPORAL_FORMS)}, got {form!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"temporal_activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        heads = heads if dim % heads == 0 else 1
        self.position = nn.Parameter(torch.randn(positions, dim) * 0.01)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, activation=ACTIVATIONS[activation],
                                           layer_norm_eps=norm_eps, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        if form == "zero-output":
            self.output = nn.Linear(dim, dim)
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)
        else:
            self.output = nn.Identity()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        T = frames.shape[-2]
        if T > self.position.shape[0]:
            raise ValueError(f"the temporal encoder has positions for {self.position.shape[0]} frames, got {T}")
        shape = frames.shape
        flat = frames.reshape(-1, T, shape[-1])  # nn.TransformerEncoder takes [B, T, D]
        return (flat + self.output(self.encoder(flat + self.position[:T]))).reshape(shape)


# one block of CLIP's text transformer (OpenAI layout) -> the same weights in a TransformerEncoderLayer
CLIP_BLOCK_TO_LAYER = {
    "attn.in_proj_weight": "self_attn.in_proj_weight", "attn.in_proj_bias": "self_attn.in_proj_bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "norm1.weight", "ln_1.bias": "norm1.bias", "ln_2.weight": "norm2.weight", "ln_2.bias": "norm2.bias",
    "mlp.c_fc.weight": "linear1.weight", "mlp.c_fc.bias": "linear1.bias",
    "mlp.c_proj.weight": "linear2.weight", "mlp.c_proj.bias": "linear2.bias",
}


def clip_block_names(layers: int, source_prefix: str, target_prefix: str) -> dict[str, str]:
    """`{source_prefix}{i}.attn.in_proj_weight` -> `{target_prefix}encoder.layers.{i}.self_attn.in_proj_weight`
    and so on, for blocks 0 .. layers-1 (e.g. source `transformer.resblocks.`, target `temporal.`)."""
    return {f"{source_prefix}{i}.{clip}": f"{target_prefix}encoder.layers.{i}.{ours}"
            for i in range(layers) for clip, ours in CLIP_BLOCK_TO_LAYER.items()}
