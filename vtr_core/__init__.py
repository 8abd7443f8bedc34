"""vtr_core: video-text retrieval with S3MA, EERCF, CAMoE+DSL and mean pooling over CLIP features.

Data flows one way, and the subpackages follow it: video files (`video`) -> frames -> features
(`backbones`) -> stored once in an index (`indexing` builds it, `index` holds it) -> heads
(`methods`) -> similarities and rankings (`retrieval`) -> the explorer's services (`explorer`) ->
app.py, or the command line (`cli`). `training` fits and evaluates heads on stored features;
`studies` measures everything. `contracts` checks the invariants in one place.
"""

__version__ = "0.1.0"
