"""Benchmarks: speed and memory as measured facts, each figure printed beside its target.

`python -m vtr_core bench SUITE [--device cpu|cuda] --json OUT` runs one suite (query, memory,
indexing, training, scale; one module each); `bench report` turns the JSON files under docs/bench/ into
docs/PERFORMANCE.md (performance, targets). Every suite measures all its figures in one run and
reports ratios next to absolute times, since shared machines are noisy.

The names below are the package's interface: `from vtr_core.studies import bench; bench.X`.
"""

from vtr_core.studies.bench.common import (
    HNSW_EF_SEARCH,
    HNSW_RECALL_TARGET,
    device_sync,
    machine,
    percentiles,
    recall_at,
    timed,
    write_json,
)
from vtr_core.studies.bench.indexing import (
    GpuUtilisation,
    indexing_suite,
    random_clip_spec,
)
from vtr_core.studies.bench.memory import (
    current_rss_bytes,
    explorer_at_rest,
    index_memory,
    peak_rss_bytes,
)
from vtr_core.studies.bench.performance import (
    render_performance,
    two_stage_accuracy,
    write_performance,
)
from vtr_core.studies.bench.query import (
    FINE_CHUNK,
    QueryBench,
    QueryRow,
    batch_throughput,
    copy_bandwidth,
    fine_all_seconds,
    gpu_coarse_search,
    query_suite,
)
from vtr_core.studies.bench.scale import (
    ScaleBench,
    ScaleRow,
    SyntheticBackbone,
    scale_suite,
)
from vtr_core.studies.bench.targets import targets
from vtr_core.studies.bench.training import training_suite
from vtr_core.studies.bench.vectors import (
    RealLikeVectors,
    real_like_vectors,
    unit_vectors,
)

__all__ = [
    "FINE_CHUNK", "HNSW_EF_SEARCH", "HNSW_RECALL_TARGET", "GpuUtilisation", "QueryBench", "QueryRow", "RealLikeVectors",
    "ScaleBench", "ScaleRow", "SyntheticBackbone", "batch_throughput", "copy_bandwidth", "current_rss_bytes",
    "device_sync", "explorer_at_rest", "fine_all_seconds", "gpu_coarse_search", "index_memory", "indexing_suite",
    "machine", "peak_rss_bytes", "percentiles", "query_suite", "random_clip_spec", "real_like_vectors", "recall_at",
    "render_performance", "scale_suite", "targets", "timed", "training_suite", "two_stage_accuracy", "unit_vectors",
    "write_json", "write_performance",
]
