"""Training and evaluating heads: datasets, stored features, the training loop, metrics.

The submodules split by responsibility (data, features, loop, distributed, end_to_end, evaluate,
metrics); callers outside this package import what they use from here, so those files can move
without touching them.
"""

from vtr_core.training.data import RetrievalDataset, load_dataset
from vtr_core.training.distributed import (
    GatheredLoss,
    average_gradients,
    init_distributed,
    world,
)
from vtr_core.training.end_to_end import (
    BACKBONE_LR_SCALE,
    EndToEndData,
    fine_tune,
    prepare_pixels,
)
from vtr_core.training.evaluate import EvalResult, evaluate_head
from vtr_core.training.features import (
    VideoFeatureSet,
    caption_features,
    features_dir,
    video_features,
)
from vtr_core.training.loop import (
    TrainConfig,
    TrainData,
    TrainResult,
    ValidationData,
    train_head,
    warmup_cosine,
)
from vtr_core.training.metrics import text_to_video_metrics, video_to_text_metrics

__all__ = [
    "BACKBONE_LR_SCALE",
    "EndToEndData",
    "EvalResult",
    "GatheredLoss",
    "RetrievalDataset",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "ValidationData",
    "VideoFeatureSet",
    "average_gradients",
    "caption_features",
    "evaluate_head",
    "features_dir",
    "fine_tune",
    "init_distributed",
    "load_dataset",
    "prepare_pixels",
    "text_to_video_metrics",
    "train_head",
    "video_features",
    "video_to_text_metrics",
    "warmup_cosine",
    "world",
]
