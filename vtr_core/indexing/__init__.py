"""Building an index from a folder of videos: scan and plan, decode in workers, encode, commit;
or, under torchrun, a shard per process merged into one index (`sharded`).

The names are resolved on first use (PEP 562) rather than imported here: the decode worker
processes import vtr_core.indexing.workers, and through it this package, and must not pay for
torch and the backbones that the indexer imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vtr_core.indexing.encoding import encode_clips
    from vtr_core.indexing.indexer import IndexReport, ProgressFn, index_folder, remove_videos
    from vtr_core.indexing.scan import scan_videos
    from vtr_core.indexing.sharded import index_folder_sharded, merge_shards, shard_of, torchrun_job, torchrun_world
    from vtr_core.indexing.workers import decode_ahead, default_decode_workers

_HOMES = {
    "IndexReport": "indexer",
    "ProgressFn": "indexer",
    "encode_clips": "encoding",
    "index_folder": "indexer",
    "remove_videos": "indexer",
    "scan_videos": "scan",
    "index_folder_sharded": "sharded",
    "merge_shards": "sharded",
    "shard_of": "sharded",
    "torchrun_job": "sharded",
    "torchrun_world": "sharded",
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
    "index_folder_sharded",
    "merge_shards",
    "remove_videos",
    "scan_videos",
    "shard_of",
    "torchrun_job",
    "torchrun_world",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
