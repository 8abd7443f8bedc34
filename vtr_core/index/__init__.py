"""The on-disk video index: a SQLite catalogue, memory-mapped feature segments, per-head stores.

Layout of an index directory (format 2):
  catalogue.sqlite            header, generations, segments, videos, moments (vtr_core.index.catalogue)
  segments/seg-<gen>-<tag>/   coarse.npy f32 [n, D], frames.npy f16 [n, T, D], raw.npy f16 [n, T, R]
                              (backbones with raw features), patches.npy f16 [n, T, P, D] (optional),
                              strips.bin + strips.npy (frame-strip JPEGs and their offsets)
  heads/v1-<head key>/        per-head states of each segment and stage-1 structures (head_store)
`records` holds the dataclasses, `catalogue` the database, `segments` the feature folders, `reader`
the read-only view (`VideoIndex`), `writer` the locked writer and its commits, `merging` the
background merge of small segments, `structures` the choice of faiss structure, `legacy` format 1.
"""

from vtr_core.index.catalogue import CATALOGUE, FORMAT, FORMAT_VERSION
from vtr_core.index.reader import VideoIndex
from vtr_core.index.records import IndexHeader, MomentFeatures, MomentRecord, VideoFeatures, VideoRecord
from vtr_core.index.segments import Segment
from vtr_core.index.structures import build_faiss
from vtr_core.index.writer import COMPACT_BELOW, IndexWriter, open_writer, upgrade_index

__all__ = ["CATALOGUE", "COMPACT_BELOW", "FORMAT", "FORMAT_VERSION", "IndexHeader", "IndexWriter", "MomentFeatures",
           "MomentRecord", "Segment", "VideoFeatures", "VideoIndex", "VideoRecord", "build_faiss", "open_writer",
           "upgrade_index"]
