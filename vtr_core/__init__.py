"""vtr_core: video-text retrieval with S3MA, EERCF, CAMoE+DSL and mean pooling over CLIP features.

Data flows one way, and the subpackages follow it: video files (`video`) -> frames -> features
(`backbones`) -> stored once in an index (`indexing` builds it, `index` holds it) -> heads
(`methods`) -> similarities and rankings (`retrieval`) -> the explorer's services (`explorer`) ->
app.py, or the command line (`cli`). `training` fits and evaluates heads on stored features;
`studies` measures everything. `contracts` checks the invariants in one place.
"""

__version__ = "0.1.0"

import os as _os

# OpenMP reads this when torch loads, so it is set before any subpackage imports torch (the user's
# own setting wins). PASSIVE lets torch's waiting threads sleep instead of spinning: on two busy
# cores (decode threads beside the encoder, or other processes) spinning threads wait on a
# descheduled partner after every operation and the encoder falls from ~60 to 10-18 frames/s;
# measured in backbones/lite_frames.py's notes and by `python -m vtr_core bench indexing`.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
