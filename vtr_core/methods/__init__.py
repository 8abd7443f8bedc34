"""Retrieval heads over backbone features, named as in the papers, built and loaded by name.

`base` is the one interface every head keeps; `meanp`, `s3ma`, `eercf` and `camoe` are the heads;
`registry` builds an untrained head by name, `checkpoints` saves and loads trained ones and finds
the shipped ones; `states` computes head states in bulk; `losses` and `word_classes` serve the
heads' training and CAMoE's word streams. Nothing outside this package names a head's type.
"""

from vtr_core.errors import CheckpointError
from vtr_core.methods.base import Explanation, HeadConfig, RetrievalHead, State
from vtr_core.methods.checkpoints import (
    backbone_slug,
    best_shipped_method,
    default_checkpoint,
    head_fingerprint,
    load_head,
    load_state,
    read_checkpoint,
    resolve_head,
    save_head,
)
from vtr_core.methods.registry import METHODS, create_head, make_config, method_class
from vtr_core.methods.states import (
    concat_states,
    select_rows,
    text_states,
    video_states,
)

__all__ = ["METHODS", "CheckpointError", "Explanation", "HeadConfig", "RetrievalHead", "State", "backbone_slug",
           "best_shipped_method", "concat_states", "create_head", "default_checkpoint", "head_fingerprint", "load_head", "load_state",
           "make_config", "method_class", "read_checkpoint", "resolve_head", "save_head", "select_rows",
           "text_states", "video_states"]
