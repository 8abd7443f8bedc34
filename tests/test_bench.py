"""Benchmark suites on tiny sizes: the figures exist, are consistent, and render."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from vtr_core.studies import bench


def test_percentiles_and_recall_by_hand():
    assert bench.percentiles([0.001, 0.002, 0.003]) == {"p50_ms": 2.0, "p99_ms": pytest.approx(2.98)}
    found = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    truth = np.array([[1, 2, 9, 9], [5, 6, 7, 8]])
    assert bench.recall_at(found, truth, k=4) == pytest.approx((2 / 4 + 4 / 4) / 2)


def test_query_suite_small():
    result = bench.query_suite([300, 1200], dim=16, frames=4, top_ks=(5, 10, 20), repeats=5, hnsw_from=1000,
                               encode=lambda texts: None, batch_queries=50, log=lambda m: None)
    assert [row.videos for row in result.rows] == [300, 1200]
    small, large = result.rows
    assert small.coarse_hnsw is None and set(small.rerank) == {"k=5", "k=10", "k=20"}
    settings = large.coarse_hnsw["by_efSearch"]
    assert set(settings) == {str(ef) for ef in bench.HNSW_EF_SEARCH}
    assert all(0.0 <= s["recall@10"] <= 1.0 for s in settings.values())
    assert settings[str(max(bench.HNSW_EF_SEARCH))]["recall@10"] >= settings[str(min(bench.HNSW_EF_SEARCH))]["recall@10"]
    # the speed-up is the all-N fine score over coarse search + re-rank at the middle k
    two_stage_ms = small.coarse_flat["p50_ms"] + small.rerank["k=10"]["p50_ms"]
    assert small.speedup_two_stage == pytest.approx(small.fine_all_ms / two_stage_ms, rel=0.1)
    assert small.speedup_two_stage_hnsw is None and large.speedup_two_stage_hnsw > 0
    assert result.batch["videos"] == 1200 and result.batch["queries"] == 50 and result.batch["top_k"] == 10
    assert 0 < result.batch["coarse_s"] <= result.batch["two_stage_s"]
    assert result.text_encode["p50_ms"] >= 0


def test_memory_of_the_demo_index_and_report(tmp_path):
    memory = bench.index_memory(REPO / "precomputed" / "demo_index")
    per_video = memory["bytes_per_video"]
    assert memory["videos"] == 39 and set(per_video) >= {"coarse", "frames", "patches", "raw", "strips"}
    assert per_video["coarse"] == pytest.approx(384 * 4, abs=128)  # float32 + npy header share
    assert per_video["frames"] == pytest.approx(12 * 384 * 2, abs=256)  # float16
    assert per_video["patches"] == pytest.approx(12 * 49 * 384 * 2, abs=256)
    (tmp_path / "bench").mkdir()
    bench.write_json(memory | {"peak_rss_bytes": bench.peak_rss_bytes()}, tmp_path / "bench" / "memory-demo.json")
    query = bench.query_suite([200], dim=8, frames=2, top_ks=(2, 4, 8), repeats=3, log=lambda m: None)
    bench.write_json(query, tmp_path / "bench" / "query-cpu.json")
    (tmp_path / "results.json").write_text(json.dumps({"two_stage": {"queries": 300, "rows": [
        {"k": "all pairs", "R@1": 15.0}, {"k": 10, "R@1": 14.0}, {"k": 50, "R@1": 14.7}]}}))
    bench.write_performance(tmp_path / "bench", tmp_path / "PERFORMANCE.md", tmp_path / "results.json")
    text = (tmp_path / "PERFORMANCE.md").read_text()
    assert "R@1 14.7 at k = 50 against 15.0" in text and "-0.3 points" in text
    assert "## Query latency (query-cpu" in text and "| 200 |" in text and "## Storage (memory-demo)" in text


def test_bench_cli_needs_json_and_writes_it(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "vtr_core", "bench", *args], cwd=REPO,
                                       capture_output=True, text=True)
    missing = run("memory", "--index", "precomputed/demo_index")
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error:")
    out = tmp_path / "m.json"
    done = run("memory", "--index", "precomputed/demo_index", "--json", str(out))
    assert done.returncode == 0, done.stderr
    measured = json.loads(out.read_text())
    assert measured["videos"] == 39 and measured["explorer"]["methods"] == ["meanp", "s3ma", "eercf", "camoe"]
    assert measured["explorer"]["rss_bytes_at_rest"] > measured["explorer"]["rss_bytes_before"] > 0
    latency = measured["explorer"]["query_latency"]
    assert set(latency) == set(measured["explorer"]["methods"]) and measured["explorer"]["queries"] == 16
    assert all(0 < r["encode_ms_p50_ms"] < r["p50_ms"] <= r["p99_ms"] for r in latency.values())


def check_long_video_case(case: dict, video_seconds: float) -> None:
    """One 90 s file at window:12/6 with 4 frames a moment: moments 0-12, 6-18, ... 78-90."""
    from vtr_core.studies.bench.long_videos import long_video_figures

    decode, pipeline = case["decode"], case["pipeline"]
    assert case["files"] == 1 and case["moments"] == "window:12/6" and case["frames_per_moment"] == 4
    assert decode["video_seconds"] == pytest.approx(video_seconds) and decode["moments"] == 14
    assert decode["sampled_frames"] == 14 * 4
    # the samples of overlapping 12 s windows at 4 frames (every 3 s from 1.5 s) coincide from the
    # second window on: 4 frames for the first, 2 new for each later one
    assert decode["distinct_frames"] == 4 + 2 * 13
    assert decode["moments_per_hour_of_video"] == pytest.approx(14 * 40.0)
    assert pipeline["frames"] == decode["distinct_frames"] and pipeline["target_seconds_per_hour"] == 60.0
    assert pipeline["hours_of_video_per_hour"] == pytest.approx(video_seconds / pipeline["seconds"], rel=0.01)
    assert pipeline["seconds_per_hour_of_video"] == pytest.approx(pipeline["seconds"] * 40.0, rel=0.01)
    assert 0 < pipeline["encode_s"] <= pipeline["seconds"]
    figures = long_video_figures(seconds=45.0, video_seconds=3600.0, frames=2700)
    assert figures["hours_of_video_per_hour"] == 80.0 and figures["seconds_per_hour_of_video"] == 45.0
    assert figures["frames_per_s"] == 60.0 and figures["frames_per_hour_of_video"] == 2700.0


def test_indexing_and_training_suites_small(tmp_path, lite_backbone):
    import open_clip

    from tests.conftest import TINY_CLIP, write_fast_video, write_video

    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        write_video(folder / f"v{i}.mp4", num_frames=20, seed=i)
    config = tmp_path / "tiny-clip-bench.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    clip_spec = bench.random_clip_spec("tiny-clip-bench", tmp_path)
    assert clip_spec.startswith("clip:tiny-clip-bench/") and (tmp_path / "tiny-clip-bench-random.pt").is_file()
    long_folder = tmp_path / "long"
    long_folder.mkdir()
    write_fast_video(long_folder / "long.mp4", num_frames=90 * 2, fps=2, size=(96, 64))  # 90 s
    result = bench.indexing_suite(folder, ["lite", clip_spec], num_frames=4, log=lambda m: None,
                                  long_videos=[long_folder], moments="window:12/6")
    assert result["videos"] == 3 and result["decode"]["frames_per_s"] > 0
    [case] = result["backbones"]["lite"]["long_videos"]
    check_long_video_case(case, video_seconds=90.0)
    assert "long_videos" not in result["backbones"]["clip:tiny-clip-bench"]  # the first backbone only
    assert set(result["backbones"]) == {"lite", "clip:tiny-clip-bench"}
    for measured in result["backbones"].values():
        assert measured["pipeline"]["failed"] == 0 and measured["encode"]["frames_per_s"] > 0
        pipeline = measured["pipeline"]
        assert pipeline["encode_share"] > 0 and not pipeline["decode_processes"]  # threads on a CPU encoder
        # the main thread's stages are parts of the wall time
        assert 0 < pipeline["wait_s"] + pipeline["encode_s"] + pipeline["store_s"] <= pipeline["seconds"]
    assert set(result["decode_scaling"]) >= {"1", "2"} and result["decode_workers_processes"]["frames_per_s"] > 0
    training = bench.training_suite(lite_backbone, ["meanp", "camoe"], videos=16, frames=3, epochs=1, batch_size=8,
                                    log=lambda m: None)
    assert training["methods"]["meanp"]["steps"] == 2 and training["methods"]["camoe"]["steps_per_s"] > 0
    (tmp_path / "bench").mkdir()
    bench.write_json(result, tmp_path / "bench" / "indexing-cpu.json")
    bench.write_json(training, tmp_path / "bench" / "training-cpu.json")
    bench.write_performance(tmp_path / "bench", tmp_path / "PERFORMANCE.md")
    text = (tmp_path / "PERFORMANCE.md").read_text()
    assert "## Indexing throughput (indexing-cpu" in text and "| lite |" in text and "| camoe |" in text
    assert "### Long videos (lite, `--moments window:12/6`, 4 frames a moment)" in text
    assert "14 moments (560 an hour), 56 sampled frames of which 30 distinct" in text
    assert "| fold batch norm into convolutions |" in text  # the encoder's optimisation steps
    assert "- An hour of long video indexed in at most 60 s (lite, cpu, 96x64 at 2 fps, `window:12/6`): " in text


def test_scale_rows_and_targets_in_the_report():
    row = dict(commits=10, commit_ms_first=8.0, commit_ratio=1.0, build_s=5.0, segments=12, prime_s=1.0,
               rerank_prime_s=2.0, rerank_open_s=0.1, query_p99_ms=2.0, rerank_p99_ms=9.0, structure="HNSW32",
               disk_bytes=2_000_000_000, index_dir="")
    sizes = [dict(row, size=10_000, commit_ms=8.0, open_s=0.1, rss_mb=500.0, vector_mb=14.6, query_p50_ms=1.0,
                  rerank_p50_ms=6.0, recall_at_10=1.0),
             dict(row, size=1_000_000, commit_ms=12.5, open_s=2.5, rss_mb=2500.0, vector_mb=1464.8,
                  query_p50_ms=4.0, rerank_p50_ms=21.0, recall_at_10=0.96)]
    scale = {"frames": 12, "dim": 384, "commit_every": 64, "queries": 50, "vectors": "v", "by_size": sizes,
             "machine": {"cpus": 2}}
    demo = {"bytes_per_video": {"coarse": 1}, "videos": 39, "frames": 12, "backbone": "lite", "index_bytes": 1,
            "explorer": {"methods": ["meanp", "eercf"], "rss_bytes_at_rest": 2**30, "rss_bytes_before": 2**29,
                         "queries": 16, "query_latency": {
                             "meanp": {"p50_ms": 9.0, "p99_ms": 12.0, "encode_ms_p50_ms": 8.0,
                                       "search_ms_p50_ms": 0.4, "rerank_ms_p50_ms": 0.0},
                             "eercf": {"p50_ms": 51.0, "p99_ms": 60.0, "encode_ms_p50_ms": 8.0,
                                       "search_ms_p50_ms": 0.5, "rerank_ms_p50_ms": 40.0}}}}
    text = bench.render_performance({"scale-cpu": scale, "memory-demo": demo})
    # 12.5 / 8.0 = 1.56 > 1.5; 2.5 s > 2 s; 2,500 <= 1,464.8 + 1,024; 4 ms at 0.96; 21 ms > 20 ms
    assert "12.5 ms against 8.0 ms, 1.56x; not met" in text
    assert "2.50 s; not met" in text and "(2,489 MB): 2,500 MB; not met" in text
    assert "p50 4.00 ms at recall@10 0.960 (HNSW32); met" in text and "p50 21.0 ms; not met" in text
    assert "meanp 9.0 ms, eercf 51.0 ms; not met" in text
    assert "## Index scale (scale-cpu: 2 CPU cores)" in text and "| 1,000,000 | HNSW32 | 12 | 8.0 / 12.5 |" in text
    assert "| eercf | 51.0 | 60.0 | 8.0 | 0.50 | 40.00 |" in text


def test_long_corpus_joins_clips_into_one_long_video(tmp_path):
    """`bench long-corpus`: clips' frames in order, scaled and re-timed, cut at the length asked for."""
    import av

    from tests.conftest import write_video
    from vtr_core.studies.bench.long_corpus import write_long_video

    clips = [write_video(tmp_path / f"c{i}.mp4", num_frames=20, seed=i) for i in range(2)]  # 40 frames in all
    made = write_long_video(clips, tmp_path / "long" / "l.mp4", seconds=3.0, width=96, height=64, fps=10)
    assert made["frames"] == 30 and made["seconds"] == 3.0
    with av.open(made["file"]) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert (stream.width, stream.height, len(frames)) == (96, 64, 30)
        assert float(container.duration / 1e6) == pytest.approx(3.0, abs=0.15)
    with av.open(str(clips[1])) as container:  # frame 21 of the long video is the second clip's second frame
        second = [f.reformat(width=96, height=64).to_ndarray(format="rgb24") for f in container.decode(video=0)][1]
    assert np.abs(frames[21].astype(int) - second.astype(int)).mean() < 8  # x264 at CRF 23
    made = write_long_video(clips, tmp_path / "all.mp4", seconds=60.0, width=96, height=64, fps=10)
    assert made["frames"] == 40  # the clips ran out first
