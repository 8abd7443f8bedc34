"""The results report: every evaluation the README table shows, generated, never typed.

`python -m vtr_core report --data-dir DIR --backbone lite` evaluates, on MSR-VTT:
- test300: zero-shot meanp, and each method's shipped (trained) head, plain and with DSL;
- 1k-A: every method zero-shot (the standard 1,000-query protocol);
- eercf's two-stage search against scoring all pairs finely, at k = 10, 50, 100, with timings;
and writes docs/results.json, docs/RESULTS.md and the table between README's result markers. RESULTS.md
also shows the long-video moment benchmark from docs/bench/moments-*.json when a run of eval-moments
wrote one (vtr_core.studies.moments.tables).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import torch

from vtr_core.backbones import Backbone
from vtr_core.methods import (
    METHODS,
    create_head,
    default_checkpoint,
    load_head,
    text_states,
    video_states,
)
from vtr_core.retrieval.ranking import all_pair_scores, rank_order, two_stage_scores
from vtr_core.studies.moments.tables import moments_section
from vtr_core.training.data import load_dataset
from vtr_core.training.evaluate import EvalResult, evaluate_head
from vtr_core.training.features import caption_features, video_features
from vtr_core.training.metrics import text_to_video_metrics

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
REPORTED_MOMENTS = "moments-lite.json"  # README shows the test300 run; RESULTS.md every run (val ones included)


def _split(data_dir: str, split: str, backbone: Backbone, cache: str | None):
    dataset = load_dataset(data_dir, split)
    videos = video_features(dataset, backbone, cache)
    return dataset, videos, caption_features(dataset.queries, backbone, cache), caption_features(dataset.captions, backbone, cache)


def _evaluate(head, source: str, split_data, split: str, backbone: Backbone) -> EvalResult:
    dataset, videos, queries, captions = split_data
    return evaluate_head(head, videos.frames, videos.patches, queries, torch.as_tensor(dataset.query_video), captions,
                         torch.as_tensor(dataset.caption_video), rerank_top_k=head.eval_rerank_top_k,
                         method=head.name, backbone=backbone.spec, split=split, head_source=source, raw=videos.raw)


def two_stage_study(head, split_data, ks=(10, 50, 100), repeats: int = 3) -> dict:
    """R@1 and time of eercf's two-stage ranking against all-pairs fine scoring (text-to-video)."""
    dataset, videos, queries, _ = split_data
    truth = torch.as_tensor(dataset.query_video)
    with torch.no_grad():
        v = video_states(head, videos.frames, videos.patches, raw=videos.raw)
        q = text_states(head, queries)

        def timed(fn):
            best, out = float("inf"), None
            for _ in range(repeats):
                started = time.perf_counter()
                out = fn()
                best = min(best, time.perf_counter() - started)
            return out, best

        full, full_seconds = timed(lambda: all_pair_scores(head, q, v))
        rows = [{"k": "all pairs", "R@1": text_to_video_metrics(full, truth)["R@1"], "seconds": full_seconds, "speedup": 1.0}]
        for k in ks:
            (scores, mask), seconds = timed(lambda k=k: two_stage_scores(head, q, v, k))
            rows.append({"k": k, "R@1": text_to_video_metrics(rank_order(scores, mask), truth)["R@1"],
                         "seconds": seconds, "speedup": full_seconds / seconds})
    return {"queries": len(dataset.queries), "videos": len(dataset), "rows": rows}


def run_report(data_dir: str, backbone: Backbone, cache: str | None = None, log=print) -> dict:
    train_corpus = load_dataset(data_dir, "train700").captions
    report = {"backbone": backbone.spec, "backbone_id": backbone.id, "test300": [], "1kA": [], "two_stage": None}
    test = _split(data_dir, "test300", backbone, cache)
    zero_shot_meanp = create_head("meanp", backbone, num_frames=test[1].frames.shape[1])
    report["test300"].append(_evaluate(zero_shot_meanp, "zero-shot", test, "test300", backbone).to_dict())
    log("test300 zero-shot meanp done")
    for name in METHODS:
        path = default_checkpoint(name, backbone)
        if path is None:
            log(f"no shipped checkpoint for {name}: skipped")
            continue
        head = load_head(path, backbone, method=name, num_frames=test[1].frames.shape[1])
        report["test300"].append(_evaluate(head, f"trained ({path.name})", test, "test300", backbone).to_dict())
        log(f"test300 trained {name} done")
        if name == "eercf":
            report["two_stage"] = two_stage_study(head, test)
    full = _split(data_dir, "1kA", backbone, cache)
    for name in METHODS:
        head = create_head(name, backbone, num_frames=full[1].frames.shape[1], corpus=train_corpus)
        report["1kA"].append(_evaluate(head, "zero-shot", full, "1kA", backbone).to_dict())
        log(f"1kA zero-shot {name} done")
    return report


def _cells(metrics: dict) -> str:
    return " | ".join(f"{metrics[k]:.1f}" for k in ("R@1", "R@5", "R@10")) + f" | {metrics['MdR']:.0f}"


def results_table(rows: list[dict]) -> str:
    lines = ["| method | head | DSL | T2V R@1 | R@5 | R@10 | MdR | V2T R@1 | R@5 | R@10 | MdR |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        head = "zero-shot" if row["head_source"] == "zero-shot" else "trained"
        for label, part in (("no", row["plain"]), ("yes", row["dsl"])):
            lines.append(f"| {row['method']} | {head} | {label} | {_cells(part['t2v'])} | {_cells(part['v2t'])} |")
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    test = report["test300"][0]["plain"]["t2v"]["count"] if report["test300"] else 0
    parts = [
        f"Backbone `{report['backbone']}` (`{report['backbone_id']}`), 12 frames per video.",
        "",
        f"**test300** ({test} videos; text-to-video: the JSFUSION caption of each video; video-to-text: all 20 "
        "captions per video, CLIP4Clip's max-over-captions rule). Trained heads were trained on 600 train700 videos "
        "and selected on the other 100; test300 was never used for training, tuning or selection. "
        "DSL rows are transductive: they revise the score matrix of the whole query set at once.",
        "",
        results_table(report["test300"]),
        "",
        "**1k-A, zero-shot** (1,000 videos, 1,000 JSFUSION queries; 20,000 captions for video-to-text):",
        "",
        results_table(report["1kA"]),
    ]
    study = report.get("two_stage")
    if study:
        parts += ["", f"**eercf two-stage search** (trained head, test300 text-to-video, {study['queries']} queries x "
                  f"{study['videos']} videos): stage-1 recall of the top k by S_v, then the fine score for those k only.",
                  "", "| k | R@1 | seconds | speed-up over all pairs |", "| --- | ---: | ---: | ---: |"]
        for row in study["rows"]:
            parts.append(f"| {row['k']} | {row['R@1']:.1f} | {row['seconds']:.3f} | {row['speedup']:.1f}x |")
    return "\n".join(parts) + "\n"


def write_report(report: dict, docs: Path, readme: Path | None) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results.json").write_text(json.dumps(report, indent=1))
    body = render_markdown(report)
    heading = "# Results\n\nGenerated by `python -m vtr_core report`; do not edit by hand.\n\n"
    moments = moments_section(docs / "bench")  # the test300 run and the val runs that chose the default
    (docs / "RESULTS.md").write_text(heading + body + (f"\n## Long videos (moments)\n\n{moments}" if moments else ""))
    reported = moments_section(docs / "bench", REPORTED_MOMENTS)
    body += f"\n**Long videos (moments)**\n\n{reported}" if reported else ""
    if readme is not None and readme.is_file():
        text = readme.read_text()
        block = f"{README_START}\n{body}{README_END}"
        if README_START in text:
            text = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: block, text, flags=re.S)
        else:
            text += f"\n## Results\n\n{block}\n"
        readme.write_text(text)
