"""The offline backbone's towers, measured: image towers (Lite0/1/2), tuned text towers, tuned
image stages, each with heads.

`python -m vtr_core accuracy --towers RUNS.json` measures each configuration RUNS.json lists (a
label, a backbone spec, a head checkpoint, how it was trained) and writes docs/towers.json; the
ACCURACY.md section is rendered from that file. Validation is the 100 videos held out of
train700 with every caption as a text-to-video query (2,000); test300 uses the JSFUSION sentence
of each video (300 queries), as docs/RESULTS.md does. Choices are made on validation only; test300
is reported for each configuration once.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vtr_core.backbones import create_backbone
from vtr_core.errors import VtrError
from vtr_core.methods import load_head
from vtr_core.storage import atomic_write_bytes, read_plain
from vtr_core.training import caption_features, evaluate_head, load_dataset, video_features

# validation R-sum a configuration must gain over the shipped default to replace it: the 100
# validation videos move R-sum by about 2 between neighbouring epochs of one run, and a switch
# costs every user's index (and, for a larger tower, indexing speed)
SWITCH_MARGIN = 3.0
FRAMES_PER_SECOND_SAMPLE = 96  # frames timed per image tower (320x240, after a warm-up batch)
SPEED_REPEATS = 3  # timings per image tower; the median is reported


@dataclass
class TowerRun:
    """One configuration to measure: a trained head on a backbone."""

    label: str
    backbone: str  # spec
    head: str  # checkpoint path
    training: str = ""  # how it was trained, in words
    train_seconds: float | None = None
    # a configuration validation did not choose: its validation figures are the ones its training
    # recorded for the kept epoch (the same protocol, stored in the head checkpoint), and it is
    # never run on test300 (nor its videos indexed again)
    validation_only: bool = False
    shipped_default: bool = False  # the configuration the app and `search` use by default


def _split(data_dir: str | Path, split: str, backbone, cache: str | None) -> dict:
    dataset = load_dataset(data_dir, split)
    videos = video_features(dataset, backbone, cache)
    captions = caption_features(dataset.captions, backbone, cache)
    caption_video = torch.as_tensor(dataset.caption_video)
    if split == "val":  # every caption a query: stable enough to choose by
        queries, query_video = captions, caption_video
    else:
        queries, query_video = caption_features(dataset.queries, backbone, cache), torch.as_tensor(dataset.query_video)
    return {"videos": videos, "queries": queries, "query_video": query_video, "captions": captions,
            "caption_video": caption_video}


def frames_per_second(backbone, count: int = FRAMES_PER_SECOND_SAMPLE, repeats: int = SPEED_REPEATS) -> float:
    """The image tower's encoding speed on this machine (frames/s, 320x240 frames, torch's threads):
    the median of `repeats` timings after a warm-up batch, since one timing swings by a third."""
    frames = np.random.default_rng(0).integers(0, 256, (count, 240, 320, 3), dtype=np.uint8)
    backbone.encode_frames(frames[:16])
    speeds = []
    for _ in range(repeats):
        started = time.perf_counter()
        backbone.encode_frames(frames)
        speeds.append(count / (time.perf_counter() - started))
    return float(np.median(speeds))


def model_megabytes(backbone, head) -> dict:
    """Parameters (millions) of the image tower, the text tower and the head."""
    count = lambda module: sum(p.numel() for p in module.parameters()) / 1e6  # noqa: E731
    return {"image_mparams": round(count(backbone.image_model), 2),
            "text_mparams": round(count(backbone.text_encoder.model), 2), "head_mparams": round(count(head), 2)}


def measure(run: TowerRun, data_dir: str | Path, cache: str | None = None, speeds: dict | None = None) -> dict:
    """Both directions on val and test300 for one configuration, its size and its image tower's
    speed (timed once per image side in `speeds`, keyed by frames_id, so rows of a tower agree)."""
    backbone = create_backbone(run.backbone, "cpu")
    head = load_head(run.head, backbone, num_frames=12)
    speeds = {} if speeds is None else speeds
    if backbone.frames_id not in speeds:
        speeds[backbone.frames_id] = round(frames_per_second(backbone), 1)
    row = {**asdict(run), "backbone_id": backbone.id, **model_megabytes(backbone, head),
           "frames_per_s": speeds[backbone.frames_id]}
    if run.validation_only:
        record = read_plain(run.head, what="head checkpoint")["training"]["record"]
        row["val"] = {"t2v": record["val_t2v"], "v2t": record["val_v2t"]}
        return row
    for split in ("val", "test300"):
        data = _split(data_dir, split, backbone, cache)
        videos = data["videos"]
        result = evaluate_head(head, videos.frames, videos.patches, data["queries"], data["query_video"],
                               data["captions"], data["caption_video"], rerank_top_k=head.eval_rerank_top_k,
                               raw=videos.raw)
        row[split] = {direction: result.plain[direction] for direction in ("t2v", "v2t")}
    return row


def read_runs(runs_file: str | Path) -> list[TowerRun]:
    """RUNS.json: a list of {label, backbone, head[, training, train_seconds]}; anything else is a
    one-line error before a model loads."""
    try:
        entries = json.loads(Path(runs_file).read_text())
        if not isinstance(entries, list) or not entries:
            raise ValueError("expected a non-empty list of configurations")
        runs = [TowerRun(**entry) for entry in entries]
    except (OSError, ValueError, TypeError) as exc:
        raise VtrError(f"{runs_file}: not a towers runs file ({str(exc).splitlines()[0]})") from None
    missing = [run.head for run in runs if not Path(run.head).is_file()]
    if missing:
        raise VtrError(f"{runs_file}: head checkpoint {missing[0]} does not exist")
    return runs


def run_towers(runs_file: str | Path, data_dir: str | Path, docs: str | Path, cache: str | None = None,
               log=print) -> list[dict]:
    """Measure every configuration of RUNS.json and write docs/towers.json."""
    runs = read_runs(runs_file)
    rows, speeds = [], {}
    for run in runs:
        log(f"measuring {run.label}")
        rows.append(measure(run, data_dir, cache, speeds))
    atomic_write_bytes(Path(docs) / "towers.json", (json.dumps(rows, indent=1) + "\n").encode())
    return rows


def _cells(metrics: dict) -> str:
    return " | ".join(f"{metrics[k]:.1f}" for k in ("R@1", "R@5", "R@10")) + f" | {metrics['MdR']:.0f}"


def _test_cells(row: dict) -> str:
    if "test300" not in row:  # validation_only
        return " | ".join(["not run (not chosen)"] + [""] * 7)
    return f"{_cells(row['test300']['t2v'])} | {_cells(row['test300']['v2t'])}"


def render_towers(rows: list[dict]) -> list[str]:
    """The ACCURACY.md section: one line per configuration, validation beside test300."""
    if not rows:
        return []
    head = ("| configuration | training | val t2v R@1 | R@5 | R@10 | MdR | val v2t R@1 | R@5 | R@10 | MdR "
            "| test300 t2v R@1 | R@5 | R@10 | MdR | test300 v2t R@1 | R@5 | R@10 | MdR | train s | frames/s "
            "| image / text / head Mparams |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        seconds = f"{r['train_seconds']:.0f}" if r.get("train_seconds") is not None else ""
        lines.append(f"| {r['label']} | {r['training']} | {_cells(r['val']['t2v'])} | {_cells(r['val']['v2t'])} "
                     f"| {_test_cells(r)} | {seconds} "
                     f"| {r['frames_per_s']:.0f} | {r['image_mparams']:.1f} / {r['text_mparams']:.1f} "
                     f"/ {r['head_mparams']:.1f} |")
    return lines


def rsum(metrics: dict) -> float:
    return metrics["R@1"] + metrics["R@5"] + metrics["R@10"]


def summary_lines(rows: list[dict]) -> list[str]:
    """Which configuration validation picks, and what it gives on test300 against the goal."""
    if not rows:
        return []
    best = max(rows, key=lambda r: rsum(r["val"]["t2v"]))
    lines = [f"- Best on validation among the configurations of section 5: {_pick(best)}"]
    default = next((r for r in rows if r.get("shipped_default")), None)
    if default is not None and default is not best:
        gain = rsum(best["val"]["t2v"]) - rsum(default["val"]["t2v"])
        verdict = ("less than the" if gain < SWITCH_MARGIN else "at least the")
        lines.append(f"- The shipped default: {_pick(default)} The best is {gain:.1f} ahead on validation, {verdict} "
                     f"{SWITCH_MARGIN:.1f} that replacing the shipped model needs"
                     + (", so the default stays." if gain < SWITCH_MARGIN else ": ship it."))
    return lines


def _pick(row: dict) -> str:
    """A configuration's validation R-sum and what it gives on test300, in words."""
    said = f"{row['label']} (val R-sum {rsum(row['val']['t2v']):.1f})"
    if "test300" not in row:
        return said + ", listed as validation only: measure it on test300 (drop validation_only)."
    test = row["test300"]["t2v"]
    return said + f"; on test300 text-to-video R@1 {test['R@1']:.1f}, R@10 {test['R@10']:.1f} (goal R@1 >= 20)."


def load_towers(docs: str | Path) -> list[dict]:
    path = Path(docs) / "towers.json"
    return json.loads(path.read_text()) if path.is_file() else []
