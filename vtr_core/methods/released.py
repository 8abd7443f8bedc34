"""Heads out of checkpoints trained with the papers' public code: CLIP4Clip (meanP, seqTransf) and EERCF.

Both codebases save `model.state_dict()` of one module: the CLIP tower under `clip.` (imported by
backbones/clip_import.py) and the head's own parameters beside it:

    CLIP4Clip meanP       nothing                                         -> meanp
    CLIP4Clip seqTransf   frame_position_embeddings.weight [77, D]        -> meanp with sequence_encoder
                          transformerClip.resblocks.{i}.*  (CLIP blocks)
    EERCF                 the seqTransf keys, global_mat_weight [D, D],   -> eercf
                          frame_logit_weight [T, T]

The heads take the released temporal encoder's form (methods/temporal.py) and CLIP's logit scale,
so their scores are the released forward's divided by that scale (docs/IMPORT.md has the formulas
and tests/test_import_checkpoint.py checks them against a forward written from the released code).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vtr_core.errors import CheckpointError
from vtr_core.methods.base import RetrievalHead
from vtr_core.methods.registry import METHODS, make_config
from vtr_core.methods.temporal import CLIP_BLOCK_TO_LAYER, RELEASED_TEMPORAL, clip_block_names

FORMATS = ("eercf", "clip4clip")
POSITIONS = "frame_position_embeddings.weight"
BLOCKS = "transformerClip.resblocks."
EERCF_KEYS = {"global_mat_weight": "G", "frame_logit_weight": "A"}
# heads these codebases can also train, which no head here computes: the first key that shows one
UNSUPPORTED = {"lstm_visual.": "a seqLSTM head", "cross.": "a tightTransf (cross-encoder) head",
               "similarity_dense.": "a tightTransf (cross-encoder) head"}


@dataclass
class ReleasedHead:
    """A head built from released weights, and how its keys were found."""

    head: RetrievalHead
    variant: str  # meanP, seqTransf or eercf
    num_frames: int
    key_map: dict[str, str] = field(default_factory=dict)  # our key -> the file's key


def temporal_layers(rest: dict[str, torch.Tensor]) -> int:
    """How many transformerClip blocks the file holds (0: none)."""
    numbers = {int(m.group(1)) for k in rest if (m := re.match(re.escape(BLOCKS) + r"(\d+)\.", k))}
    return max(numbers) + 1 if numbers else 0


def expected_keys(variant: str, layers: int) -> list[str]:
    """The head keys a file of this variant must hold, beside the tower."""
    if variant == "meanP":
        return []
    keys = [POSITIONS] + [f"{BLOCKS}{i}.{name}" for i in range(layers) for name in CLIP_BLOCK_TO_LAYER]
    return keys + list(EERCF_KEYS) if variant == "eercf" else keys


def file_variant(fmt: str, rest: dict[str, torch.Tensor], what: str) -> str:
    """meanP, seqTransf or eercf, from the format asked for and the keys the file holds."""
    for prefix, kind in UNSUPPORTED.items():
        if any(k.startswith(prefix) for k in rest):
            raise CheckpointError(f"{what}: {kind} ({prefix}* keys); only meanP, seqTransf and EERCF heads import")
    if fmt == "eercf":
        return "eercf"
    if any(k in rest for k in EERCF_KEYS):
        raise CheckpointError(f"{what}: an EERCF checkpoint (global_mat_weight, frame_logit_weight): import it as "
                              "the eercf format", setting="format")
    return "seqTransf" if rest else "meanP"


def check_keys(rest: dict[str, torch.Tensor], variant: str, what: str) -> int:
    """Every key the variant needs is there and nothing else is; the number of temporal layers."""
    layers = temporal_layers(rest)
    if variant != "meanP" and layers == 0:
        raise CheckpointError(f"{what}: no temporal encoder ({BLOCKS}0.* keys), which {variant} checkpoints hold")
    expected = expected_keys(variant, layers)
    missing = [k for k in expected if k not in rest]
    unknown = sorted(set(rest) - set(expected))
    if missing or unknown:
        names = ["missing " + k for k in missing] + ["unknown " + k for k in unknown]
        raise CheckpointError(f"{what}: keys that do not fit a {variant} checkpoint: {', '.join(names[:4])}"
                              + (f" (and {len(names) - 4} more)" if len(names) > 4 else ""))
    return layers


def head_settings(variant: str, rest: dict[str, torch.Tensor], layers: int, embed_dim: int, what: str) -> dict:
    """The head config's values for the released model (methods/temporal.py's released form)."""
    if variant == "meanP":
        return {}
    positions, width = rest[POSITIONS].shape
    if width != embed_dim:
        raise CheckpointError(f"{what}: its temporal encoder is {width}-d, its CLIP tower {embed_dim}-d")
    settings = {**RELEASED_TEMPORAL, "temporal_layers": layers, "temporal_positions": int(positions),
                "temporal_heads": max(1, width // 64)}  # CLIP4Clip: transformer_width // 64 heads
    if variant == "seqTransf":
        settings["sequence_encoder"] = True
    else:
        frames = rest["frame_logit_weight"].shape[0]
        if rest["global_mat_weight"].shape != (embed_dim, embed_dim) or rest["frame_logit_weight"].shape != (frames, frames):
            raise CheckpointError(f"{what}: global_mat_weight {list(rest['global_mat_weight'].shape)} / "
                                  f"frame_logit_weight {list(rest['frame_logit_weight'].shape)} do not fit a "
                                  f"{embed_dim}-d EERCF head")
        settings["num_frames"] = int(frames)
    return settings


def released_head(fmt: str, rest: dict[str, torch.Tensor], embed_dim: int, logit_scale: torch.Tensor,
                  what: str) -> ReleasedHead:
    """The head of a released checkpoint (`rest`: its keys outside the CLIP tower)."""
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown checkpoint format {fmt!r}: use one of {', '.join(FORMATS)}")
    variant = file_variant(fmt, rest, what)
    layers = check_keys(rest, variant, what)
    method = "eercf" if variant == "eercf" else "meanp"
    settings = head_settings(variant, rest, layers, embed_dim, what)
    num_frames = settings.pop("num_frames", 12)
    head = METHODS[method](embed_dim, make_config(method, num_frames, **settings))
    key_map = {"logit_scale": "clip.logit_scale"}
    if variant != "meanP":
        key_map["temporal.position"] = POSITIONS
        key_map.update({ours: theirs for theirs, ours in clip_block_names(layers, BLOCKS, "temporal.").items()})
    if variant == "eercf":
        key_map.update({ours: theirs for theirs, ours in EERCF_KEYS.items()})
    state = head.state_dict()  # the adapters stay at their zero start: the identity
    for ours, theirs in key_map.items():
        state[ours] = (logit_scale if theirs == "clip.logit_scale" else rest[theirs]).float().reshape(state[ours].shape)
    head.load_state_dict(state, strict=True)
    return ReleasedHead(head.eval(), variant, num_frames, key_map)


@dataclass
class ImportReport:
    """What `import_checkpoint` wrote, and what it found in the file."""

    backbone_spec: str
    backbone_id: str
    method: str
    variant: str
    head_path: str
    ignored: list[str]  # keys the format is known to carry that nothing here uses
    key_map: dict[str, str]  # head key -> the file's key (the tower's keys map one to one)
    tower_keys: int


def import_checkpoint(path: str | Path, fmt: str, out_dir: str | Path, arch: str | None = None) -> ImportReport:
    """Read a released checkpoint (weights only: never a full unpickle) and write, in `out_dir`, its
    CLIP tower as a backbone (backbone.pt), its head tied to that backbone (head.pt) and a record
    of the import (import.json), which lets the app and `search` find the head for the backbone."""
    from vtr_core.backbones import create_backbone
    from vtr_core.backbones.clip_import import save_tower, split_tower, strip_wrapper, tower_arch
    from vtr_core.methods.checkpoints import IMPORT_RECORD, save_head
    from vtr_core.storage import atomic_write_bytes, file_sha256, read_plain

    path, out_dir = Path(path), Path(out_dir)
    what = f"checkpoint {path}"
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown checkpoint format {fmt!r}: use one of {', '.join(FORMATS)}")
    state = strip_wrapper(read_plain(path, what="checkpoint", kind="state dict"), what)
    tower, rest, ignored = split_tower(state)
    model_name = tower_arch(tower, arch, what)
    released = released_head(fmt, rest, int(tower["text_projection"].shape[1]), tower["logit_scale"], what)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = save_tower(tower, model_name, out_dir / "backbone.pt", what)
    backbone = create_backbone(spec, "cpu")
    head_path = out_dir / "head.pt"
    save_head(released.head, head_path, backbone.id, released.num_frames,
              extra={"imported": {"format": fmt, "variant": released.variant, "source": path.name,
                                  "source_sha256": file_sha256(path)}})
    report = ImportReport(spec, backbone.id, released.head.name, released.variant, str(head_path.resolve()), ignored,
                          released.key_map, len(tower))
    atomic_write_bytes(out_dir / IMPORT_RECORD, json.dumps(
        {"format": fmt, "source": str(path), **asdict(report), "head": head_path.name}, indent=1).encode())
    return report
