"""Building an index from a folder of videos: scan and plan, decode in workers, encode, commit.

The names are resolved on first use (PEP 562) rather than imported here: the decode worker
processes import vtr_core.indexing.workers, and through it this package, and must not pay for
torch and the backbones that the indexer imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtr_core.indexing.indexer import (
        IndexReport,
        ProgressFn,
        encode_clips,
        index_folder,
        remove_videos,
    )
    from vtr_core.indexing.scan import scan_videos
    from vtr_core.indexing.workers import decode_ahead, default_decode_workers

_HOMES = {
    "IndexReport": "indexer",
    "ProgressFn": "indexer",
    "encode_clips": "indexer",
    "index_folder": "indexer",
    "remove_videos": "indexer",
    "scan_videos": "scan",
    "decode_ahead": "workers",
    "default_decode_workers": "workers",
}

__all__ = [
    "IndexReport",
    "ProgressFn",
    "decode_ahead",
    "default_decode_workers",
    "encode_clips",
    "index_folder",
    "remove_videos",
    "scan_videos",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
