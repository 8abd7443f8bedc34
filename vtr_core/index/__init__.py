"""The on-disk video index: records, memory-mapped feature segments, a faiss file, atomic commits.

Layout of an index directory:
  manifest.json               format, version, generation, header, the video records
  segments/seg-<gen>-<tag>/   coarse.npy f32 [n, D], frames.npy f16 [n, T, D], raw.npy f16 [n, T, R]
                              (backbones with raw features), patches.npy f16 [n, T, P, D] (optional),
                              strips/<row>.jpg
  faiss/coarse-<gen>.faiss    coarse vectors of the manifest's videos, in manifest order
`records` holds the dataclasses, `manifest` the files that publish a generation, `reader` the
read-only view (`VideoIndex`), `writer` the locked writer and its commits.
"""

from vtr_core.index.manifest import FORMAT, FORMAT_VERSION, MANIFEST, build_faiss
from vtr_core.index.reader import Segment, VideoIndex
from vtr_core.index.records import IndexHeader, VideoFeatures, VideoRecord
from vtr_core.index.writer import COMPACT_BELOW, IndexWriter, open_writer

__all__ = ["COMPACT_BELOW", "FORMAT", "FORMAT_VERSION", "MANIFEST", "IndexHeader", "IndexWriter", "Segment",
           "VideoFeatures", "VideoIndex", "VideoRecord", "build_faiss", "open_writer"]
