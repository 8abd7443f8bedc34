"""The invariants, each checked in one place: query text, and the fit of backbone, index and head.

Vectors from different backbones, widths or frame counts are never comparable, and a mix gives
silently wrong scores rather than an error. Every path that joins two of these parties (the
CLI, the explorer, the index reader and writer, the searcher, checkpoint loading) asks here, so
a mismatch reads the same everywhere: one line naming both sides. Messages speak of the
library's settings (`IndexMismatchError.setting`); a front end adds its own name for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vtr_core.errors import CheckpointError, IndexMismatchError, QueryError

if TYPE_CHECKING:
    from vtr_core.backbones import Backbone
    from vtr_core.index import IndexHeader, VideoIndex
    from vtr_core.methods import RetrievalHead

MAX_QUERY_CHARS = 1_000  # a query or caption; longer text is refused, not cut


# -- queries -------------------------------------------------------------------------------------
def clean_query(text: Any) -> str:
    """The text with control characters dropped and whitespace collapsed, or a one-line error."""
    if not isinstance(text, str):
        raise QueryError(f"a query must be text, got {type(text).__name__}")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if not text:
        raise QueryError("empty query: type a few words describing the clip")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"query too long ({len(text)} characters): keep it under {MAX_QUERY_CHARS}")
    return text


def clean_queries(texts: str | list[str]) -> list[str]:
    """`clean_query` of each text (a lone string is one query); no texts at all is an error too."""
    cleaned = [clean_query(text) for text in ([texts] if isinstance(texts, str) else texts)]
    if not cleaned:
        raise QueryError("no queries given")
    return cleaned


# -- index and backbone ----------------------------------------------------------------------------
def _width(backbone_id: str, dim: int) -> str:
    return f"{backbone_id} ({dim}-d)"


def check_backbone(header: IndexHeader, where: str, backbone_id: str | None, embed_dim: int | None = None) -> None:
    """Refuse to read an index with vectors of another backbone (or another width of the same one)."""
    backbone_id = backbone_id or header.backbone_id
    if backbone_id != header.backbone_id or (embed_dim is not None and embed_dim != header.embed_dim):
        theirs = _width(backbone_id, embed_dim) if embed_dim is not None else backbone_id
        raise IndexMismatchError(f"{where} was built with backbone {_width(header.backbone_id, header.embed_dim)}, "
                                 f"but this run uses {theirs}: use the index's own backbone or re-index",
                                 setting="backbone")


HEADER_FIELDS = ("num_frames", "embed_dim", "store_patches", "num_patches", "raw_dim")


def check_header(header: IndexHeader, where: str, asked: IndexHeader) -> None:
    """Refuse to add features made differently (backbone, frames, widths, patches) to an index."""
    if asked.backbone_id != header.backbone_id:
        raise IndexMismatchError(f"{where} was built with backbone {_width(header.backbone_id, header.embed_dim)}, "
                                 f"this run uses {_width(asked.backbone_id, asked.embed_dim)}: use a new index directory",
                                 setting="backbone")
    for name in HEADER_FIELDS:
        if getattr(header, name) != getattr(asked, name):
            raise IndexMismatchError(f"{where} has {name}={getattr(header, name)}, this run asks for "
                                     f"{name}={getattr(asked, name)}: use a new index directory", setting=name)


def check_settings(header: IndexHeader, where: str, **asked: object) -> None:
    """Settings an index was built with (`num_frames=`, `faiss_factory=`, ...) asked for again:
    another value is an error (None: not asked). Checked before any backbone loads."""
    for name, value in asked.items():
        if value is not None and value != getattr(header, name):
            raise IndexMismatchError(f"{where} was built with {name}={getattr(header, name)}; this run asks for "
                                     f"{name}={value}: index into a new directory to change it", setting=name)


def check_spec(header: IndexHeader, where: str, asked_spec: str | None) -> None:
    """A backbone spec asked for explicitly must be the index's own (`auto` or none: any)."""
    from vtr_core.backbones import resolve_backbone_spec

    if asked_spec and asked_spec != "auto" and resolve_backbone_spec(asked_spec) != header.backbone_spec:
        raise IndexMismatchError(f"{where} was built with backbone {_width(header.backbone_spec, header.embed_dim)}, "
                                 f"not {asked_spec}: use the index's own backbone, or re-index",
                                 setting="backbone")


def open_with_backbone(index_dir: str | Path, asked_spec: str | None = None,
                       device: str = "auto") -> tuple[VideoIndex, Backbone]:
    """An index and the backbone it was built with (built here); another backbone asked for is an error."""
    from vtr_core.backbones import create_backbone
    from vtr_core.index import VideoIndex

    index = VideoIndex.open(index_dir)
    check_spec(index.header, f"index {index_dir}", asked_spec)
    backbone = create_backbone(index.header.backbone_spec, device)
    return VideoIndex.open(index_dir, backbone_id=backbone.id, embed_dim=backbone.embed_dim), backbone


# -- heads -----------------------------------------------------------------------------------------
def head_label(method: str) -> str:
    """ "an eercf head", "an s3ma head", "a camoe head", "a meanp head" """
    return f"{'an' if method[:1] in 'aeios' else 'a'} {method} head"


def check_head(header: IndexHeader, where: str, head: RetrievalHead) -> None:
    """A head scores features of one width, frame count and raw width: the index's, or an error."""
    if head.embed_dim != header.embed_dim:
        raise IndexMismatchError(f"the {head.name} head is for {head.embed_dim}-d features; {where} has "
                                 f"{header.embed_dim}-d")
    if head.num_frames is not None and head.num_frames != header.num_frames:
        raise IndexMismatchError(f"the {head.name} head was built for {head.num_frames} frames per video; "
                                 f"{where} has {header.num_frames}")
    if head.raw_dim and head.raw_dim != header.raw_dim:
        raise IndexMismatchError(f"the {head.name} head is for {head.raw_dim}-d raw features; "
                                 f"{where} stores {header.raw_dim or 'none'}")


def check_search(index: VideoIndex, backbone: Backbone, head: RetrievalHead | None) -> None:
    """Everything a search joins: the index's vectors, the backbone that encodes queries, the head."""
    where = f"index {index.directory}"
    check_backbone(index.header, where, backbone.id, backbone.embed_dim)
    if head is not None:
        check_head(index.header, where, head)


def check_checkpoint(checkpoint: dict, where: str, backbone: Backbone, num_frames: int | None,
                     method: str | None = None) -> None:
    """A head checkpoint's method, backbone, widths and frames against what the caller has."""
    name, dim, raw_dim = checkpoint["method"], checkpoint["embed_dim"], checkpoint.get("raw_dim", 0)
    a_head = head_label(name)
    if method is not None and name != method:
        raise CheckpointError(f"{where} is for method {name}, not {method} ({a_head} for {dim}-d features)")
    if checkpoint["backbone_id"] != backbone.id:
        raise CheckpointError(f"{where} was trained on backbone {_width(checkpoint['backbone_id'], dim)}, "
                              f"this run uses {_width(backbone.id, backbone.embed_dim)}")
    if dim != backbone.embed_dim:
        raise CheckpointError(f"{where} is {a_head} for {dim}-d features; backbone {backbone.id} gives "
                              f"{backbone.embed_dim}-d")
    if raw_dim != backbone.raw_dim:
        raise CheckpointError(f"{where} is {a_head} for {raw_dim}-d raw features; backbone {backbone.id} gives "
                              f"{backbone.raw_dim}-d")
    if num_frames is not None and "num_frames" in checkpoint["config"] and checkpoint["num_frames"] != num_frames:
        raise CheckpointError(f"{where} was trained with {checkpoint['num_frames']} frames, the index has {num_frames}")
