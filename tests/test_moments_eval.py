"""The long-video moment benchmark: metrics against hand-computed values, the builder on generated
clips (decoded length and ranges), an end-to-end eval-moments run whose figures are recomputed
from its hits, and a quick build on the real MSR-VTT clips (skipped without the data)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_video
from vtr_core.errors import VtrError
from vtr_core.studies.moments.build import (
    GROUND_TRUTH,
    build_split_benchmark,
    clip_order,
    load_benchmark,
)
from vtr_core.studies.moments.metrics import (
    Moment,
    corpus_moment_metrics,
    moment_hit,
    temporal_iou,
)
from vtr_core.studies.moments.tables import moments_section, moments_table

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (20, 40, 220), "yellow": (230, 220, 30),
           "white": (240, 240, 240), "black": (10, 10, 10)}


# -- metrics -----------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, expected", [
    ((0, 10), (5, 15), 5 / 15),
    ((0, 10), (0, 10), 1.0),
    ((2, 4), (0, 10), 0.2),
    ((0, 5), (5, 10), 0.0),  # touching ranges share no time
    ((0, 5), (7, 9), 0.0),
    ((3, 3), (3, 3), 0.0),  # an empty union
])
def test_temporal_iou_hand_values(a, b, expected):
    assert temporal_iou(*a, *b) == pytest.approx(expected)
    assert temporal_iou(*b, *a) == pytest.approx(expected)


def test_corpus_metrics_hand_example():
    truths = [Moment("A", 0, 10), Moment("B", 10, 20), Moment("A", 20, 30), Moment("C", 0, 4)]
    predictions = [
        [Moment("A", 0, 10)],  # exact at rank 1
        [Moment("A", 10, 20), Moment("B", 12, 20)],  # right range in the wrong video, then tIoU 0.8 at rank 2
        [Moment("A", 24, 30), Moment("A", 20, 27)],  # tIoU 0.6 at rank 1, exactly 0.7 at rank 2
        [],  # nothing found
    ]
    metrics = corpus_moment_metrics(predictions, truths)
    assert metrics == {"R@1@0.5": 50.0, "R@5@0.5": 75.0, "R@1@0.7": 25.0, "R@5@0.7": 75.0,
                       "video R@1": 50.0, "video R@5": 75.0, "queries": 4}
    # a hit needs the truth's video; rank 6 is beyond R@5
    assert not moment_hit([Moment("B", 0, 10)], truths[0], 1, 0.5)
    late = [Moment("X", 0, 1)] * 5 + [Moment("A", 0, 10)]
    assert corpus_moment_metrics([late], truths[:1])["R@5@0.5"] == 0.0
    with pytest.raises(ValueError):
        corpus_moment_metrics(predictions[:2], truths)


# -- the builder -------------------------------------------------------------------------------
def clip_folder(root: Path, names: list[str], odd: str | None = None) -> Path:
    """Generated clips of one colour each (3 fps, 64x48, 10-15 frames), with captions.jsonl; the
    `odd` clip is 6 fps at 80x60 (resampled and scaled by the builder)."""
    folder = root / "clips"
    folder.mkdir()
    with open(folder / "captions.jsonl", "w") as handle:
        for i, name in enumerate(names):
            fps, size = (6, (80, 60)) if name == odd else (3, (64, 48))
            write_video(folder / f"{name}.mp4", num_frames=(10 + i) * fps // 3, fps=fps, size=size,
                        colour=COLOURS[name])
            handle.write(json.dumps({"video_id": name, "captions": [f"a {name} screen with a moving bar"]}) + "\n")
    return folder


def decoded(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_builder_joins_clips_with_exact_ranges(tmp_path):
    names = ["red", "green", "blue", "yellow", "white"]
    folder = clip_folder(tmp_path, names, odd="blue")
    benchmark = build_split_benchmark(folder, "all", tmp_path / "bench", clips_per_video=3, seed=0)
    assert [len(v.clips) for v in benchmark.videos] == [3, 2]
    assert (benchmark.width, benchmark.height, benchmark.fps) == (64, 48, 3.0)
    order = clip_order(names, 3, 0)
    assert [c.video_id for _, c in benchmark.clips] == [names[i] for group in order for i in group]
    assert load_benchmark(tmp_path / "bench") == benchmark
    for video in benchmark.videos:
        frames = decoded(tmp_path / "bench" / "videos" / video.file)
        assert len(frames) == video.num_frames and frames[0].shape == (48, 64, 3)
        assert video.duration_s == pytest.approx(len(frames) / 3)
        position = 0
        for clip in video.clips:
            i = names.index(clip.video_id)
            assert clip.num_frames == 10 + i  # the 6 fps clip: twice the frames, resampled to the same length
            assert clip.start_frame == position and clip.start_s == pytest.approx(position / 3)
            assert clip.end_s == pytest.approx((position + clip.num_frames) / 3)
            assert clip.query == f"a {clip.video_id} screen with a moving bar"
            middle = np.median(frames[position + clip.num_frames // 2][12:].reshape(-1, 3), axis=0)  # below the band
            assert np.abs(middle - COLOURS[clip.video_id]).max() < 40, (clip.video_id, middle)
            position += clip.num_frames
        assert position == video.num_frames


def decoded_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_builder_is_deterministic_given_the_seed(tmp_path):
    folder = clip_folder(tmp_path, ["red", "green", "blue", "yellow"])
    first = build_split_benchmark(folder, "all", tmp_path / "a", clips_per_video=2, seed=3)
    again = build_split_benchmark(folder, "all", tmp_path / "b", clips_per_video=2, seed=3)
    assert first.to_dict() == again.to_dict()
    for video in first.videos:  # the same frames, up to x264's rounding (its bytes may differ from run to run)
        frames, again_frames = (decoded_frames(tmp_path / run / "videos" / video.file).astype(int) for run in "ab")
        assert len(frames) == len(again_frames) == video.num_frames
        assert np.abs(frames - again_frames).mean() < 1.0, np.abs(frames - again_frames).mean()
    assert clip_order(list("abcdefgh"), 2, 3) != clip_order(list("abcdefgh"), 2, 4)
    with pytest.raises(VtrError, match="not a moment benchmark"):
        load_benchmark(tmp_path)


# -- eval-moments, end to end ------------------------------------------------------------------
def integration_ready() -> bool:
    import inspect

    from vtr_core.indexing import index_folder
    from vtr_core.retrieval.search import Searcher

    return "moments" in inspect.signature(index_folder).parameters and \
        "per_video" in inspect.signature(Searcher.search).parameters


def independent_metrics(lines: list[dict]) -> dict:
    """R@k@t and video R@1 recomputed from the hits file, without the library's metrics."""
    def iou(hit, truth):
        inter = max(0.0, min(hit["end_s"], truth["end_s"]) - max(hit["start_s"], truth["start_s"]))
        return inter / (max(hit["end_s"], truth["end_s"]) - min(hit["start_s"], truth["start_s"]))

    out = {}
    for t in (0.5, 0.7):
        for k in (1, 5):
            found = [any(h["video"] == line["truth"]["video"] and iou(h, line["truth"]) >= t - 1e-9
                         for h in line["hits"][:k]) for line in lines]
            out[f"R@{k}@{t:g}"] = 100.0 * np.mean(found)
    out["video R@1"] = 100.0 * np.mean([bool(line["hits"]) and line["hits"][0]["video"] == line["truth"]["video"]
                                        for line in lines])
    return out


def test_eval_moments_end_to_end(tmp_path, capsys):
    if not integration_ready():
        pytest.skip("index_folder(moments=...) and Searcher.search(per_video=...) are not there yet")
    from vtr_core.cli import main

    folder = clip_folder(tmp_path, list(COLOURS))
    bench = tmp_path / "bench"
    assert main(["build-moments", "--data", str(folder), "--split", "all", "--out", str(bench),
                 "--clips-per-video", "3", "--quiet"]) == 0
    out, hits = tmp_path / "moments.json", tmp_path / "hits.jsonl"
    args = ["eval-moments", str(bench), "--moments", "window:4/2", "--moments", "shots", "--methods", "meanp",
            "--zero-shot", "--backbone", "lite", "--device", "cpu", "--frames", "4", "--cache", str(tmp_path / "cache"),
            "--json", str(out), "--hits", str(hits), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    run = json.loads(out.read_text())
    assert run["benchmark"]["videos"] == 2 and run["benchmark"]["queries"] == 6 and run["top_k"] == 5
    assert [p["policy"] for p in run["policies"]] == ["window:4/2", "shots"]
    lines = [json.loads(line) for line in hits.read_text().splitlines()]
    assert len(lines) == 2 * 6
    for policy in run["policies"]:
        assert policy["videos"] == 2 and policy["moments"] >= 2
        (method,) = policy["methods"]
        assert method["method"] == "meanp" and method["head"] == "zero-shot"
        assert 0 <= method["clip_t2v_r1"] <= 100
        mine = [line for line in lines if line["policy"] == policy["policy"]]
        assert all(len(line["hits"]) <= 5 for line in mine)
        for name, value in independent_metrics(mine).items():
            assert method["metrics"][name] == pytest.approx(value), name
        if method["clip_t2v_r1"]:
            assert method["ratio"] == pytest.approx(method["metrics"]["R@1@0.5"] / method["clip_t2v_r1"])
        assert f"| {policy['spec']} | {policy['moments']} | meanp | zero-shot |" in printed
    # the second run reuses both indexes
    assert main(args[:-3] + ["--ceiling", "none", "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert [p["moments"] for p in again["policies"]] == [p["moments"] for p in run["policies"]]
    assert all(p["index_seconds"] < p0["index_seconds"] + 30 for p, p0 in zip(again["policies"], run["policies"]))
    assert again["policies"][0]["methods"][0]["ratio"] is None


def test_results_section_reads_the_runs(tmp_path):
    run = {"benchmark": {"videos": 30, "clips_per_video": 10, "split": "test300", "seed": 0, "mean_video_s": 150.0,
                         "queries": 300}, "backbone": "lite", "num_frames": 12, "top_k": 5, "ceiling": "computed",
           "goal_ratio": 0.8, "policies": [{"policy": "shots:4/32", "moments": 900, "methods": [
               {"method": "meanp", "head": "precomputed/heads/meanp-lite.pt", "clip_t2v_r1": 13.0, "ratio": 0.5,
                "metrics": {"R@1@0.5": 6.5, "R@5@0.5": 20.0, "R@1@0.7": 3.0, "R@5@0.7": 10.0, "video R@1": 9.0}}]}]}
    assert "| shots:4/32 | 900 | meanp | trained | 6.5 | 20.0 | 3.0 | 10.0 | 9.0 | 13.0 | 0.50 (below goal) |" \
        in moments_table(run)
    assert moments_section(tmp_path) == ""
    (tmp_path / "moments-lite.json").write_text(json.dumps(run))
    section = moments_section(tmp_path)
    assert "30 long videos of 10 test300 clips" in section and "moments-lite.json" in section
    # `report` puts the section in RESULTS.md when docs/bench holds a run
    from vtr_core.studies.report import write_report

    docs = tmp_path / "docs"
    (docs / "bench").mkdir(parents=True)
    (docs / "bench" / "moments-lite.json").write_text(json.dumps(run))
    write_report({"backbone": "lite", "backbone_id": "lite:x", "test300": [], "1kA": [], "two_stage": None}, docs, None)
    assert "## Long videos (moments)" in (docs / "RESULTS.md").read_text()


# -- the real clips ----------------------------------------------------------------------------
def test_one_long_video_of_real_clips(tmp_path, msrvtt_dir):
    benchmark = build_split_benchmark(msrvtt_dir, "test300", tmp_path, clips_per_video=10, seed=0, max_videos=1)
    (video,) = benchmark.videos
    with open(msrvtt_dir / "MSRVTT_JSFUSION_test.csv", newline="") as handle:
        jsfusion = {row["video_id"]: row["sentence"] for row in csv.DictReader(handle)}
    test300 = (msrvtt_dir / "split_test300.txt").read_text().split()
    assert (benchmark.width, benchmark.height, benchmark.fps) == (298, 224, 3.0)
    assert len(video.clips) == 10
    assert all(c.video_id in test300 and c.query == jsfusion[c.video_id] for c in video.clips)
    import av

    for clip in video.clips:
        with av.open(str(msrvtt_dir / "videos" / f"{clip.video_id}.mp4")) as source:
            assert clip.num_frames == source.streams.video[0].frames
    with av.open(str(tmp_path / "videos" / video.file)) as container:
        assert container.streams.video[0].frames == video.num_frames == sum(c.num_frames for c in video.clips)
    assert video.clips[-1].end_s == pytest.approx(video.num_frames / 3)
    assert json.loads((tmp_path / GROUND_TRUTH).read_text())["split"] == "test300"
