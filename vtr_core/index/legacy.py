"""Indexes of format 1 (a manifest.json of every record, rewritten whole at each commit).

Reading one is refused with a message saying how to convert it; opening one for writing converts
it: the catalogue is built from the manifest under a temporary name and renamed into place, and
only then are the manifest and the faiss folder of format 1 removed. The segment folders stay as
they are (a format-1 segment keeps one JPEG file per frame strip; readers accept both).
A crash before the rename leaves the format-1 index untouched; after it, the catalogue wins and
the next writer deletes what format 1 left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from vtr_core.errors import IndexFormatError
from vtr_core.index.catalogue import CATALOGUE, Catalogue, CommitBatch
from vtr_core.index.records import IndexHeader, MomentRecord, VideoRecord
from vtr_core.index.segments import SEGMENTS_DIR, open_segment

MANIFEST_V1 = "manifest.json"
FAISS_V1 = "faiss"


def is_v1_index(directory: Path) -> bool:
    return (Path(directory) / MANIFEST_V1).is_file()


def v1_message(directory: Path) -> str:
    return (f"index {directory} has format 1 ({MANIFEST_V1}); convert it with "
            f"`python -m vtr_core upgrade {directory}` (any `index` or `remove` run into it converts it too)")


def _read_manifest(directory: Path) -> dict:
    try:
        manifest = json.loads((directory / MANIFEST_V1).read_text())
        if manifest.get("format") != "vtr-index" or manifest.get("version") != 1:
            raise ValueError("not a format-1 vtr-index manifest")
        return manifest
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"index {directory}: unreadable {MANIFEST_V1} ({exc})") from None


def v1_header(directory: Path) -> IndexHeader:
    try:
        return IndexHeader(**_read_manifest(Path(directory))["header"])
    except (KeyError, TypeError) as exc:
        raise IndexFormatError(f"index {directory}: {MANIFEST_V1} is damaged ({type(exc).__name__}: {exc})") from None


def convert_v1(directory: Path) -> None:
    """Build the catalogue of a format-1 index in place (the caller holds the index's lock)."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    video_fields = {f.name for f in dataclasses.fields(VideoRecord)}
    try:
        header = IndexHeader(**manifest["header"])
        entries = manifest["videos"]
        videos = [VideoRecord(**{k: v for k, v in e.items() if k in video_fields}) for e in entries]
        moments = [MomentRecord(e["video_id"], 0.0, float(e["duration_s"]), list(e["frame_times_s"]),
                                e["segment"], int(e["row"])) for e in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexFormatError(f"index {directory}: {MANIFEST_V1} is damaged ({type(exc).__name__}: {exc})") from None
    rows = {name: len(open_segment(directory / SEGMENTS_DIR / name)) for name in {m.segment for m in moments}}
    staging = directory / f".{CATALOGUE}.v1-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    Catalogue.create(staging, header)
    catalogue = Catalogue(staging, writable=True)
    catalogue.commit(CommitBatch(generation=1, videos=videos, moments=moments,
                                 new_segments=[(name, count, None) for name, count in rows.items()]))
    catalogue.close()
    os.rename(staging / CATALOGUE, directory / CATALOGUE)  # the conversion's commit point
    shutil.rmtree(staging, ignore_errors=True)
    remove_v1_leftovers(directory)


def remove_v1_leftovers(directory: Path) -> None:
    """The manifest and faiss folder of format 1, once a catalogue has replaced them."""
    if (directory / CATALOGUE).is_file():
        (directory / MANIFEST_V1).unlink(missing_ok=True)
        shutil.rmtree(directory / FAISS_V1, ignore_errors=True)
