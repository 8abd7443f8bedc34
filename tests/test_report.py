"""The generated results table: rows come from real evaluation records, README is updated in place."""

import torch

from tests.test_methods import text_features
from vtr_core.methods.meanp import MeanPooling
from vtr_core.studies.report import (
    README_END,
    README_START,
    render_markdown,
    write_report,
)
from vtr_core.training.evaluate import evaluate_head


def small_result():
    torch.manual_seed(0)
    frames = torch.randn(4, 2, 8)
    queries = text_features(frames.mean(1))  # each query matches its own video exactly
    result = evaluate_head(MeanPooling(8), frames, None, queries, torch.arange(4), queries, torch.arange(4),
                           method="meanp", backbone="lite", split="test300", head_source="zero-shot")
    return result.to_dict()


def test_table_rows_and_readme_markers(tmp_path):
    record = small_result()
    assert record["plain"]["t2v"]["R@1"] == 100.0
    report = {"backbone": "lite", "backbone_id": "lite:x", "test300": [record], "1kA": [record], "two_stage": {
        "queries": 4, "videos": 4, "rows": [{"k": "all pairs", "R@1": 100.0, "seconds": 0.2, "speedup": 1.0},
                                            {"k": 10, "R@1": 100.0, "seconds": 0.05, "speedup": 4.0}]}}
    body = render_markdown(report)
    assert "| meanp | zero-shot | no | 100.0 | 100.0 | 100.0 | 1 | 100.0 | 100.0 | 100.0 | 1 |" in body
    assert "| meanp | zero-shot | yes |" in body and "| 10 | 100.0 | 0.050 | 4.0x |" in body
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\nafter\n")
    write_report(report, tmp_path / "docs", readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("after\n")
    assert text.count(README_START) == 1 and "| meanp | zero-shot | no |" in text
    assert (tmp_path / "docs" / "RESULTS.md").read_text().startswith("# Results")
