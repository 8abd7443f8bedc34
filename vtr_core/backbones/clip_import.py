"""CLIP towers out of checkpoints saved by CLIP4Clip-style code, as open_clip backbones.

CLIP4Clip and the code derived from it (EERCF among others) keep OpenAI's CLIP module under the
attribute `clip`, so a saved state dict holds OpenAI's key names behind `clip.`, with the linear
and attention weights in float16 (their `convert_weights`). open_clip's CLIP has the same key
names; the one trap is the activation: OpenAI's towers use QuickGELU, and open_clip's plain
`ViT-B-32` config builds GELU and would load the same keys into a different function. So towers
are built from the `-quickgelu` configs, and the architecture is checked shape by shape.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vtr_core.errors import CheckpointError
from vtr_core.storage import atomic_torch_save

TOWER_PREFIX = "clip."
# OpenAI's JIT checkpoints carry these as tensors; CLIP4Clip merges them in at load time (never saved)
OPENAI_SCALARS = ("input_resolution", "context_length", "vocab_size")
# the open_clip configs a released tower may be (checked in this order when no --arch is given)
KNOWN_ARCHS = ("ViT-B-32", "ViT-B-16", "ViT-L-14")


def strip_wrapper(state: object, what: str) -> dict[str, torch.Tensor]:
    """A bare state dict out of what torch.save wrote: `{"state_dict": ...}` unwrapped and a DDP
    `module.` prefix dropped; anything but a dict of tensors is an error."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what}: not a state dict of tensors (a pytorch_model.bin saved by the training code)")
    if all(str(k).startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def split_tower(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """(the CLIP tower in open_clip's names, float32; the other keys; the known extras dropped)."""
    tower = {k[len(TOWER_PREFIX):]: v.float() for k, v in state.items() if k.startswith(TOWER_PREFIX)}
    rest = {k: v for k, v in state.items() if not k.startswith(TOWER_PREFIX)}
    dropped = [TOWER_PREFIX + name for name in OPENAI_SCALARS if tower.pop(name, None) is not None]
    return tower, rest, dropped


def tower_geometry(tower: dict[str, torch.Tensor], what: str) -> dict[str, int]:
    """The tower's shape, read off its weights as OpenAI's loader does."""
    needed = ("visual.conv1.weight", "visual.positional_embedding", "text_projection", "ln_final.weight")
    missing = [TOWER_PREFIX + k for k in needed if k not in tower]
    if missing:
        raise CheckpointError(f"{what}: no CLIP ViT tower in the file (it lacks {', '.join(missing)})")
    if "visual.conv2.weight" in tower:
        raise CheckpointError(f"{what}: a 3d linear patch (clip.visual.conv2.weight); open_clip has no such "
                              "layer: import checkpoints trained with 2d patches (their linear_patch setting)")
    conv = tower["visual.conv1.weight"]
    return {"patch_size": int(conv.shape[-1]), "vision_width": int(conv.shape[0]),
            "vision_layers": len({k.split(".")[3] for k in tower if k.startswith("visual.transformer.resblocks.")}),
            "image_size": int(conv.shape[-1]) * round((tower["visual.positional_embedding"].shape[0] - 1) ** 0.5),
            "embed_dim": int(tower["text_projection"].shape[1]), "text_width": int(tower["ln_final.weight"].shape[0]),
            "text_layers": len({k.split(".")[2] for k in tower if k.startswith("transformer.resblocks.")})}


def config_geometry(model_name: str) -> dict[str, int] | None:
    """The same figures from an open_clip config, or None when open_clip has no such model."""
    import open_clip

    config = open_clip.get_model_config(model_name)
    if not config:
        return None
    vision, text = config["vision_cfg"], config["text_cfg"]
    return {"patch_size": vision["patch_size"], "vision_width": vision["width"], "vision_layers": vision["layers"],
            "image_size": vision["image_size"], "embed_dim": config["embed_dim"], "text_width": text["width"],
            "text_layers": text["layers"]}


def quickgelu_name(arch: str) -> str:
    """`ViT-B-32` -> `ViT-B-32-quickgelu` where open_clip has that config (or `arch` builds QuickGELU itself)."""
    import open_clip

    if arch.endswith("-quickgelu") or (open_clip.get_model_config(arch) or {}).get("quick_gelu"):
        return arch
    if open_clip.get_model_config(f"{arch}-quickgelu"):
        return f"{arch}-quickgelu"
    raise CheckpointError(f"architecture {arch}: open_clip has no QuickGELU config for it ({arch}-quickgelu); "
                          "released CLIP towers need QuickGELU")


def tower_arch(tower: dict[str, torch.Tensor], arch: str | None, what: str) -> str:
    """The open_clip model name the tower loads into: `arch` checked against the weights, or found."""
    found = tower_geometry(tower, what)
    if arch is not None:
        name = quickgelu_name(arch)
        expected = config_geometry(name)
        differs = [k for k in found if expected is None or expected[k] != found[k]]
        if differs:
            key = differs[0]
            raise CheckpointError(f"{what} is not a {arch} checkpoint: its {key} is {found[key]}, {arch} has "
                                  f"{expected[key] if expected else '?'}")
        return name
    for candidate in KNOWN_ARCHS:
        if config_geometry(candidate) == found:
            return quickgelu_name(candidate)
    raise CheckpointError(f"{what}: a CLIP tower of no known architecture ({found}); name its architecture",
                          setting="arch")


def save_tower(tower: dict[str, torch.Tensor], model_name: str, path: Path, what: str) -> str:
    """Load the tower into open_clip's `model_name` (every key and shape must fit) and write it as
    a checkpoint file; the backbone spec that loads it."""
    import open_clip

    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were named: they come next
    try:
        model = open_clip.create_model(model_name)
    finally:
        logging.disable(logging.NOTSET)
    expected = model.state_dict()
    missing = [TOWER_PREFIX + k for k in expected if k not in tower]
    unknown = [TOWER_PREFIX + k for k in tower if k not in expected]
    if missing or unknown:
        names = (["missing " + k for k in missing] + ["unknown " + k for k in unknown])
        raise CheckpointError(f"{what}: the CLIP tower does not fit {model_name}: {', '.join(names[:4])}"
                              + (f" (and {len(names) - 4} more)" if len(names) > 4 else ""))
    wrong = [k for k in expected if tower[k].shape != expected[k].shape]
    if wrong:
        key = wrong[0]
        raise CheckpointError(f"{what}: the CLIP tower does not fit {model_name}: {TOWER_PREFIX}{key} is "
                              f"{list(tower[key].shape)} in the file, {list(expected[key].shape)} in the model")
    model.load_state_dict(tower, strict=True)
    atomic_torch_save({"state_dict": model.state_dict()}, path)
    return f"clip:{model_name}/{path.resolve()}"
