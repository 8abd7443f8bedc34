"""The explorer behind app.py: a collection service and a query service over one index.

`Explorer` opens an index with the backbone it was built with (a one-line error for anything
else) and hands the two services to a UI: `collection` (what is indexed, its frames and captions,
indexing and uploads) and `queries` (search, video-to-text, explanations, the DSL matrix). Both
return plain records (vtr_core.explorer.records); vtr_core.explorer.panels draws them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vtr_core.backbones import resolve_device
from vtr_core.contracts import open_with_backbone
from vtr_core.explorer.collection import MAX_UPLOAD_BYTES, CollectionService
from vtr_core.explorer.query import QueryService
from vtr_core.resources import demo_index_dir


class Explorer:
    """One index, its backbone, and the two services a UI calls."""

    def __init__(self, index_dir: str | os.PathLike | None = None, device: str = "auto", backbone: str | None = None,
                 captions: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
                 video_roots: Sequence[str | os.PathLike] = (), max_upload_bytes: int = MAX_UPLOAD_BYTES):
        source = Path(index_dir or demo_index_dir())
        self.device = resolve_device(device)
        _, self.backbone = open_with_backbone(source, backbone, self.device)
        self.collection = CollectionService(source, self.backbone, str(self.device), captions, workdir,
                                            video_roots, max_upload_bytes)
        self.queries = QueryService(self.collection)
