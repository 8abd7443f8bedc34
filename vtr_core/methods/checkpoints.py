"""Head checkpoints: save, read and load them, and find the shipped ones.

Checkpoints are loaded with `torch.load(weights_only=True)`: plain tensors, numbers, strings and
lists only, never arbitrary pickles. A checkpoint that does not fit the caller (method, backbone,
widths, frames) is refused by `vtr_core.contracts.check_checkpoint`, naming both sides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from vtr_core.backbones import Backbone
from vtr_core.contracts import check_checkpoint, head_label
from vtr_core.errors import CheckpointError, VtrError
from vtr_core.methods.base import RetrievalHead
from vtr_core.methods.registry import METHODS, create_head, method_class
from vtr_core.resources import shipped_heads_dir
from vtr_core.storage import atomic_torch_save, read_plain

CHECKPOINT_FORMAT = "vtr-head"
CHECKPOINT_VERSION = 1
IMPORT_RECORD = "import.json"  # written beside an imported backbone's weights (methods/released.py)


def save_head(head: RetrievalHead, path: str | Path, backbone_id: str, num_frames: int, extra: dict | None = None,
              half: bool = False) -> None:
    """Write a head checkpoint; `half` stores float16 weights (shipped files; loading casts back)."""
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in head.state_dict().items()}
    atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "method": head.name,
            "backbone_id": backbone_id,
            "embed_dim": head.embed_dim,
            "raw_dim": head.raw_dim,
            "num_frames": num_frames,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(head.config).items()},
            "state_dict": state,
            "head_extra": head.extra_state(),
            "training": extra or {},
        },
        path,
    )


REQUIRED_FIELDS = ("method", "backbone_id", "embed_dim", "num_frames", "config", "state_dict")


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    checkpoint = read_plain(path, kind="head checkpoint")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a vtr head checkpoint")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {checkpoint.get('version')}, expected {CHECKPOINT_VERSION}")
    missing = [k for k in REQUIRED_FIELDS if k not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path}: incomplete head checkpoint (no {', '.join(missing)})")
    if checkpoint["method"] not in METHODS:
        raise CheckpointError(f"checkpoint {path} is for method {checkpoint['method']!r}, "
                              f"which this version does not know ({', '.join(METHODS)})")
    return checkpoint


def _describe(head: RetrievalHead) -> str:
    return f"{head_label(head.name)} for {head.embed_dim}-d features"


def load_state(head: RetrievalHead, state: Any, what: str) -> None:
    """`head.load_state_dict(state)`, with a one-line error naming the first thing that does not fit."""
    expected = head.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what}: its weights are not a dict of tensors")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if wrong:
        key = wrong[0]
        raise CheckpointError(f"{what} does not fit {_describe(head)}: {key} is {list(state[key].shape)} in the file, "
                              f"{list(expected[key].shape)} in the head")
    if missing or unexpected:
        why = f"the file lacks {missing[0]}" if missing else f"the file has {unexpected[0]}, which the head lacks"
        more = len(missing) + len(unexpected) - 1
        raise CheckpointError(f"{what} does not fit {_describe(head)}: {why}" + (f" (and {more} more)" if more else ""))
    try:
        head.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{what} does not fit {_describe(head)} ({str(exc).strip().splitlines()[0][:160]})") from None


def load_head(path: str | Path, backbone: Backbone, method: str | None = None, num_frames: int | None = None) -> RetrievalHead:
    """A trained head; any mismatch with the caller's method, backbone or frames is an error."""
    checkpoint = read_checkpoint(path)
    check_checkpoint(checkpoint, f"checkpoint {path}", backbone, num_frames, method)
    name, dim, raw_dim = checkpoint["method"], checkpoint["embed_dim"], checkpoint.get("raw_dim", 0)
    config_class = method_class(name).config_class
    try:
        config = config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in checkpoint["config"].items()})
        head = method_class(name)(dim, config, raw_dim=raw_dim)
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: its {name} settings do not fit this version ({exc})") from None
    state = checkpoint["state_dict"]
    if isinstance(state, dict):
        head.fit_state_shapes(state)
    try:
        head.load_extra_state(checkpoint.get("head_extra", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: damaged {name} extra state ({type(exc).__name__}: {exc})") from None
    load_state(head, state, f"checkpoint {path}")
    return head.eval()


def head_fingerprint(head: RetrievalHead) -> str:
    """A short hash of what a head computes: its method, widths, settings, weights and extra state.

    Two heads with the same fingerprint give the same states for the same features, so stored
    states (vtr_core.index.head_store) are keyed by it.
    """
    digest = hashlib.sha256()
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(head.config).items()}
    digest.update(json.dumps([head.name, head.embed_dim, head.raw_dim, config, head.extra_state()],
                             sort_keys=True, default=str).encode())
    for name, tensor in head.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def backbone_slug(backbone: Backbone) -> str:
    return backbone.spec.split(":")[0] if backbone.spec == "lite" else backbone.spec.replace(":", "-").replace("/", "-")


def imported_head(backbone: Backbone) -> tuple[str, Path] | None:
    """(method, head file) of a model imported with `import-checkpoint`, when the backbone's
    weights are the ones it wrote: the record beside them names the head made with them."""
    weights = getattr(backbone, "weights_path", None)
    record_path = Path(weights).parent / IMPORT_RECORD if weights else None
    if record_path is None or not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        method, head = record["method"], record_path.parent / record["head"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (method, head) if record.get("backbone_id") == backbone.id and head.is_file() else None


def default_checkpoint(name: str, backbone: Backbone) -> Path | None:
    """The head a method starts from on a backbone: the one imported with its weights, else the
    shipped one, if there is one."""
    imported = imported_head(backbone)
    if imported is not None and imported[0] == name:
        return imported[1]
    path = shipped_heads_dir() / f"{name}-{backbone_slug(backbone)}.pt"
    return path if path.is_file() else None


def best_shipped_method(backbone: Backbone) -> str:
    """The method whose shipped head scored best on validation (R@1+R@5+R@10), else meanp.

    Validation is the 100 train700 videos every shipped head was held out from, so the choice
    never looks at test data; the app and `search` start from this method. A model imported with
    its backbone starts from the imported head's method.
    """
    imported = imported_head(backbone)
    if imported is not None:
        return imported[0]
    scores = {}
    for name in METHODS:
        path = default_checkpoint(name, backbone)
        if path is None:
            continue
        try:
            record = read_checkpoint(path).get("training", {}).get("record", {})
        except CheckpointError:
            continue
        if "val_rsum" in record:
            scores[name] = float(record["val_rsum"])
    return max(scores, key=lambda n: (scores[n], -list(METHODS).index(n))) if scores else "meanp"


def resolve_head(name: str, backbone: Backbone, checkpoint: str | Path | None = None, zero_shot: bool = False,
                 num_frames: int = 12, corpus: list[str] | None = None) -> tuple[RetrievalHead, str]:
    """The head a command asked for, and where it came from (a path, or "zero-shot")."""
    if checkpoint and zero_shot:
        raise VtrError("give a checkpoint or ask for the zero-shot head, not both", setting="checkpoint")
    if not zero_shot:
        path = Path(checkpoint) if checkpoint else default_checkpoint(name, backbone)
        if path is not None:
            return load_head(path, backbone, method=name, num_frames=num_frames), str(path)
    return create_head(name, backbone, num_frames=num_frames, corpus=corpus), "zero-shot"
