"""The evaluation table the explorer shows: docs/results.json, as `python -m vtr_core report` writes it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vtr_core.errors import VtrError
from vtr_core.resources import results_json


def results_table(path: str | os.PathLike | None = None) -> tuple[list[str], list[list]]:
    """The evaluation table (docs/results.json, written by `vtr_core report`): columns, rows."""
    path = path or results_json()
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise VtrError(f"{path}: no readable results ({exc.__class__.__name__})") from None
    columns = ["split", "method", "head", "DSL", "T2V R@1", "T2V R@5", "T2V R@10", "T2V MdR",
               "V2T R@1", "V2T R@5", "V2T R@10", "V2T MdR"]
    rows = []
    for split in ("test300", "1kA"):
        for record in data.get(split, []):
            for dsl, metrics in (("no", record["plain"]), ("yes", record["dsl"])):
                if not metrics:
                    continue
                head = "zero-shot" if record["head_source"] == "zero-shot" else "trained"
                t2v, v2t = metrics["t2v"], metrics["v2t"]
                rows.append([split, record["method"], head, dsl,
                             *(round(t2v[k], 1) for k in ("R@1", "R@5", "R@10", "MdR")),
                             *(round(v2t[k], 1) for k in ("R@1", "R@5", "R@10", "MdR"))])
    if not rows:
        raise VtrError(f"{path}: no result rows in it")
    return columns, rows
