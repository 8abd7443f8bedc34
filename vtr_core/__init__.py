"""vtr_core: video-text retrieval with S3MA, EERCF, CAMoE+DSL and mean pooling over CLIP features.

Data flows one way: video file -> frames (video) -> features (backbones) -> head (methods) ->
similarities -> index / ranking (index, search) -> UI (app.py).
"""

__version__ = "0.1.0"
