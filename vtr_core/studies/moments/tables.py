"""The long-video moment benchmark as markdown: the table eval-moments prints, and the RESULTS.md section.

Both read the JSON a run writes (`MomentsEval.to_dict`), so the report never needs the run itself.
"""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = ("R@1@0.5", "R@5@0.5", "R@1@0.7", "R@5@0.7", "video R@1")
PATTERN = "moments-*.json"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _head(source: str) -> str:
    return "zero-shot" if source == "zero-shot" else "trained"


def moments_table(run: dict) -> str:
    """One row per (policy, method): the TVR metrics, the clip-level ceiling and the ratio to it."""
    goal = run.get("goal_ratio", 0.8)
    lines = ["| policy | moments | method | head | " + " | ".join(COLUMNS) + " | clip R@1 | ratio |",
             "| --- | ---: | --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " | ---: | ---: |"]
    for policy in run["policies"]:
        for method in policy["methods"]:
            cells = " | ".join(_number(method["metrics"][c]) for c in COLUMNS)
            ratio = method["ratio"]
            mark = "" if ratio is None or ratio >= goal else " (below goal)"
            name = policy.get("spec", policy["policy"])
            lines.append(f"| {name} | {policy['moments']} | {method['method']} | {_head(method['head'])} | "
                         f"{cells} | {_number(method['clip_t2v_r1'])} | {_number(ratio, 2)}{mark} |")
    return "\n".join(lines)


def describe_run(run: dict) -> str:
    """What the table measures, in one paragraph."""
    bench = run["benchmark"]
    merged = "adjacent hits of a video merged" if run.get("merge", True) else "every moment on its own"
    return (f"{bench['videos']} long videos of {bench['clips_per_video']} "
            f"{bench['split']} clips each (seed {bench['seed']}, {bench['mean_video_s']:.0f} s on average), "
            f"{bench['queries']} queries (each clip's query), searched over the whole corpus; backbone "
            f"`{run['backbone']}`, {run['num_frames']} frames per moment, top {run['top_k']} ranges ({merged}). "
            f"R@k@t: one of the top k ranges is in the right video with tIoU >= t (TVR's video "
            f"corpus moment retrieval); video R@1: the first range is in the right video. clip R@1: the same "
            f"head's text-to-video R@1 on the same clips, whole ({run['ceiling']}); ratio: R@1@0.5 / clip R@1, "
            f"goal {run.get('goal_ratio', 0.8):g}.")


def moments_section(bench_dir: str | Path, pattern: str = PATTERN) -> str:
    """Markdown for every file matching `pattern` (moments-*.json) under `bench_dir` ("" when there is none)."""
    parts = []
    for path in sorted(Path(bench_dir).glob(pattern)):
        run = json.loads(path.read_text())
        parts += [describe_run(run) + f" From `{path.name}`.", "", moments_table(run), ""]
    return "\n".join(parts)
