"""The scale suite on small sizes: real indexes of N moments, every figure present, exact recall on Flat."""

import dataclasses
import json

import pytest

from vtr_core.cli import main
from vtr_core.errors import VtrError
from vtr_core.index import VideoIndex
from vtr_core.studies import bench

FIELDS = {"size", "commits", "commit_ms", "commit_ms_first", "commit_ratio", "build_s", "segments", "prime_s",
          "open_s", "rss_mb", "vector_mb", "query_p50_ms", "query_p99_ms", "rerank_prime_s", "rerank_open_s",
          "rerank_p50_ms", "rerank_p99_ms", "recall_at_10", "structure", "disk_bytes", "index_dir"}


def test_scale_suite_builds_real_indexes(tmp_path):
    result = bench.scale_suite([300, 900], dim=32, frames=4, commit_every=64, queries=10, keep_dir=tmp_path,
                               log=lambda m: None)
    assert [row.size for row in result.by_size] == [300, 900]
    for row in result.by_size:
        assert set(dataclasses.asdict(row)) == FIELDS
        index = VideoIndex.open(row.index_dir)
        assert len(index) == row.size and index.header.backbone_id == "synthetic-32"
        assert not index.header.store_patches and index.header.raw_dim == 0
        assert row.commits == row.size // 64  # full commits only; the shorter last one is not timed
        assert row.structure == "Flat" and row.recall_at_10 == 1.0
        assert row.commit_ms > 0 and row.commit_ms_first > 0 and row.commit_ratio > 0
        assert row.open_s > 0 and row.rss_mb > 0 and row.disk_bytes > 0
        assert 0 < row.query_p50_ms <= row.query_p99_ms and 0 < row.rerank_p50_ms <= row.rerank_p99_ms
    assert result.by_size[1].disk_bytes > result.by_size[0].disk_bytes


def test_synthetic_backbone_refuses_text():
    with pytest.raises(VtrError, match="query vectors"):
        bench.SyntheticBackbone(16).encode_text(["a dog"])


def test_bench_scale_cli_writes_json(tmp_path):
    out = tmp_path / "scale.json"
    code = main(["bench", "scale", "--sizes", "200", "--dim", "16", "--frames", "3", "--commit-every", "64",
                 "--queries", "5", "--json", str(out)])
    assert code == 0
    written = json.loads(out.read_text())
    assert written["frames"] == 3 and written["dim"] == 16 and written["commit_every"] == 64
    assert [row["size"] for row in written["by_size"]] == [200] and written["by_size"][0]["recall_at_10"] == 1.0
    assert "cpus" in written["machine"]
