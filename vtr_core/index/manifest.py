"""The files that make a generation visible: the manifest (JSON) and the faiss file of its coarse
vectors. Both are replaced atomically; the manifest is written last, so it alone publishes a commit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from vtr_core.errors import IndexFormatError, IndexMismatchError
from vtr_core.index.records import IndexHeader, VideoRecord
from vtr_core.index.structures import build_structure, choose_structure
from vtr_core.storage import atomic_write_bytes, atomic_write_json

FORMAT = "vtr-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
AUTO = "auto"  # the faiss factory that lets the collection's size choose (vtr_core.index.structures)


def faiss_module():
    import faiss

    return faiss


def build_faiss(vectors: np.ndarray, factory: str = "auto"):
    """Inner-product faiss index of the vectors: the structure `auto` chooses for their count (see
    vtr_core.index.structures), or the one a factory string names ("Flat", "HNSW32", "IVF256,PQ32", ...)."""
    plan = choose_structure(len(vectors), vectors.shape[1], override=None if factory == AUTO else factory)
    if not len(vectors):  # nothing to train on yet: the empty structure, filled by later commits
        faiss = faiss_module()
        return faiss.index_factory(vectors.shape[1], plan.factory, faiss.METRIC_INNER_PRODUCT)
    return build_structure(np.ascontiguousarray(vectors, dtype=np.float32), plan)


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise IndexFormatError(f"index {directory}: no such directory")
    if not path.is_file():
        raise IndexFormatError(f"{directory} is not a video index (no {MANIFEST}); build one with `index`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"index {directory}: unreadable {MANIFEST} ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{directory}: {MANIFEST} is not a {FORMAT} manifest")
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        advice = ("a newer vtr_core wrote it: upgrade" if isinstance(version, int) and version > FORMAT_VERSION
                  else "re-index it with this program")
        raise IndexMismatchError(
            f"index {directory} has format version {version}, this program reads version {FORMAT_VERSION} ({advice})"
        )
    return manifest


def write_faiss(directory: Path, generation: int, vectors: np.ndarray, factory: str, base=None) -> str:
    faiss = faiss_module()
    if base is None:
        index = build_faiss(vectors, factory)
    else:  # only additions since the last generation: extend it instead of rebuilding
        index = base
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    name = f"coarse-{generation:06d}.faiss"
    atomic_write_bytes(directory / "faiss" / name, faiss.serialize_index(index).tobytes())
    return name


def write_manifest(directory: Path, generation: int, header: IndexHeader, videos: list[VideoRecord], faiss_file: str) -> None:
    atomic_write_json(
        directory / MANIFEST,
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "generation": generation,
            "header": dataclasses.asdict(header),
            "faiss": faiss_file,
            "videos": [dataclasses.asdict(v) for v in videos],
        },
    )
