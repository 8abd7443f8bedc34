"""docs/PERFORMANCE.md, generated from the suites' JSON files under docs/bench/ (`bench report`):
one section per file, by what the file holds, after the Targets section."""

from __future__ import annotations

import json
from pathlib import Path

from vtr_core.storage import atomic_write_bytes
from vtr_core.studies.bench.common import HNSW_RECALL_TARGET, best_hnsw
from vtr_core.studies.bench.targets import targets


def _machine_name(result: dict) -> str:
    return result["machine"].get("gpu") or result["machine"]["processor"]


def _rerank_cells(row: dict) -> str:
    return " | ".join(f"{row['rerank'][k]['p50_ms']:.2f} / {row['rerank'][k]['p99_ms']:.2f}" for k in row["rerank"])


def gpu_query_table(result: dict) -> list[str]:
    lines = ["", f"Stage 1 on the GPU: an exact float16 product and top-k in torch (vtr_core.retrieval.exact_search). "
             f"Memory bandwidth measured in this run (device-to-device copy, read + write): "
             f"{result['copy_bytes_per_s'] / 1e12:.2f} TB/s; the floor is reading N x {result['dim']} float16 once.", "",
             "| N | exact GPU search p50 / p99 | product alone | top-k alone | floor | p50 / floor | "
             "re-rank k=10 | k=50 | k=100 | fine score of all N | two-stage speed-up |",
             "|---:|---|---:|---:|---:|---:|---|---|---|---:|---:|"]
    for row in result["rows"]:
        g = row["coarse_gpu"]
        lines.append(f"| {row['videos']:,} | {g['p50_ms']:.3f} / {g['p99_ms']:.3f} | {g['product_p50_ms']:.3f} | "
                     f"{g['topk_p50_ms']:.3f} | {g['floor_ms']:.4f} | {g['p50_over_floor']:.2f}x | "
                     + _rerank_cells(row) + f" | {row['fine_all_ms']:.1f} | {row['speedup_two_stage']:.1f}x |")
    return lines


def cpu_query_table(result: dict) -> list[str]:
    lines = ["", "| N | faiss Flat | HNSW32 (efSearch, recall@10) | re-rank k=10 | k=50 | k=100 | "
             "fine score of all N | two-stage speed-up, Flat / HNSW stage 1 (target 20x at 1M; EERCF claims ~50x) |",
             "|---:|---|---|---|---|---|---:|---:|"]
    for row in result["rows"]:
        flat = row["coarse_flat"]
        best = best_hnsw(row)
        hnsw = (f"{best[1]['p50_ms']:.2f} / {best[1]['p99_ms']:.2f} ({best[0]}, {best[1]['recall@10']:.3f})"
                if best else "-")
        lines.append(f"| {row['videos']:,} | {flat['p50_ms']:.2f} / {flat['p99_ms']:.2f} | {hnsw} | "
                     + _rerank_cells(row) + f" | {row['fine_all_ms']:.1f} | {row['speedup_two_stage']:.1f}x / "
                     + (f"{row['speedup_two_stage_hnsw']:.1f}x |" if row.get("speedup_two_stage_hnsw") and best
                        and best[1]["recall@10"] >= HNSW_RECALL_TARGET else "- |"))
    return lines


def query_notes(result: dict) -> list[str]:
    """What bounds stage 1 where it ran, and how hard the vectors are."""
    if result.get("copy_bytes_per_s"):
        return ["", "Below 1M videos the GPU search is bound by launches and the host round trip (about "
                "0.4 ms), not by memory bandwidth; at 1M the product alone runs near the floor. The re-rank "
                "times do not grow with N: stage 2 scores k videos whatever the collection size.", ""]
    hardness = ("uniformly random unit vectors are HNSW's hardest case, real features cluster"
                if "uniform" in result.get("vectors", "uniform") else
                "the fitted Gaussian keeps real vectors' narrow cone and the gap between text and video, "
                "but none of a real collection's clusters: it is harder than a real collection of that size")
    return ["", "Target for CPU coarse search: HNSW under 2 ms at recall@10 >= 0.95 (the HNSW column shows "
            f"the fastest efSearch reaching 0.95, else the most accurate one tried; {hardness}). The re-rank "
            "times do not grow with N: stage 2 scores k videos whatever the collection size.", ""]


def query_section(name: str, result: dict) -> list[str]:
    lines = [f"## Query latency ({name}: {result['device']}, {_machine_name(result)}, "
             f"{result['machine']['torch_threads']} threads)", "",
             f"One text query; N synthetic video vectors of {result['dim']} dimensions "
             f"({result.get('vectors', 'uniformly random unit vectors')}); EERCF (1-layer temporal "
             f"encoder) with {result['frames']} frames per video for re-ranking and for the all-N baseline."]
    if result.get("text_encode"):
        lines.append(f"Text encoding ({result.get('text_backbone') or 'lite'}): {result['text_encode']['p50_ms']:.1f} / "
                     f"{result['text_encode']['p99_ms']:.1f} ms.")
    lines += gpu_query_table(result) if result.get("copy_bytes_per_s") else cpu_query_table(result)
    if result.get("batch"):
        b = result["batch"]
        lines += ["", f"A batch of {b['queries']:,} queries at N = {b['videos']:,} ({b.get('stage_one', 'faiss Flat')}): coarse search "
                  f"{b['coarse_queries_per_s']:,.0f} queries/s; with the fine score of each query's top "
                  f"{b['top_k']}, {b['two_stage_queries_per_s']:,.0f} queries/s."]
    return lines + query_notes(result)


def indexing_intro(name: str, result: dict) -> list[str]:
    """The workload, and decoding alone: on one thread, by threads, in the indexer's workers."""
    d = result["decode"]
    repeated = result.get("distinct_videos", result["videos"]) != result["videos"]
    lines = [f"## Indexing throughput ({name}: {result['device']}, {_machine_name(result)})", "",
             f"{result['videos']} videos ({result.get('distinct_videos', result['videos'])} distinct videos"
             + (f" from `{result['video_folder']}`" if result.get("video_folder") else "")
             + (f", each indexed {result['videos'] // result['distinct_videos']} times under other names" if repeated else "")
             + f"), {result['frames_per_video']} frames each. Decode alone (decord, one thread): "
             f"{d['videos_per_s']:.1f} videos/s, {d['frames_per_s']:.0f} frames/s."]
    if result.get("decode_scaling"):
        lines.append("Decoding alone by threads: " + ", ".join(f"{t}: {fps:,.0f}" for t, fps in result["decode_scaling"].items())
                     + " frames/s.")
    for mode in ("threads", "processes"):
        job = result.get(f"decode_workers_{mode}")
        if job:
            lines.append(f"The indexer's decode workers alone (decode, hash, thumbnail strip) in {job['workers']} {mode}: "
                         f"{job['frames_per_s']:,.0f} frames/s.")
    return lines


def indexing_table(result: dict) -> list[str]:
    lines = ["", "| backbone | encode alone (frames/s) | whole pipeline (frames/s, videos/s) | encode share | "
             "main thread: waiting / encoding / storing (s) | GPU busy | decode workers |",
             "|---|---:|---:|---:|---|---:|---|"]
    for spec, b in result["backbones"].items():
        for key in ("pipeline", "pipeline_threads"):
            p = b.get(key)
            if not p:
                continue
            share = p.get("encode_share", b.get("encode_share"))
            stages = f"{p['wait_s']:.1f} / {p['encode_s']:.1f} / {p['store_s']:.1f}" if "wait_s" in p else "-"
            busy = f"{p['gpu_utilisation_percent']:.0f}%" if p.get("gpu_utilisation_percent") is not None else "-"
            workers = ("processes" if p.get("decode_processes") else "threads") if "decode_processes" in p else "threads"
            lines.append(f"| {spec} | {b['encode']['frames_per_s']:,.1f} | {p['frames_per_s']:,.1f}, {p['videos_per_s']:.2f} | "
                         f"{share:.2f} | {stages} | {busy} | {workers} |")
    return lines


def encoder_lines(spec: str, encoder: dict) -> list[str]:
    """The frame encoder alone: each CPU optimisation's frames/s and ratio to the step before."""
    lines = [f"Frame encoder alone ({spec}, a batch of {encoder['batch_frames']}, {encoder['torch_threads']} torch "
             f"threads, OMP_WAIT_POLICY={encoder.get('omp_wait_policy') or 'unset'}): "
             f"{encoder['frames_per_s']:,.1f} frames/s"
             + "".join(f"; {t} thread{'s' if t != '1' else ''}: {fps:,.1f}"
                       for t, fps in encoder["frames_per_s_by_threads"].items() if t != str(encoder["torch_threads"]))
             + "."]
    if encoder.get("optimisations"):
        lines += ["", "| step (each includes those above) | frames/s | × previous | × original |", "|---|---:|---:|---:|"]
        lines += [f"| {o['step']} | {o['frames_per_s']:,.1f} | {o['ratio_to_previous']:.2f} | {o['ratio_to_original']:.2f} |"
                  for o in encoder["optimisations"]]
    if encoder.get("frames_per_s_by_micro_batch"):
        lines += ["", "By micro-batch (frames per pass; 0: the whole batch): " + ", ".join(
            f"{size}: {fps:,.1f}" for size, fps in sorted(encoder["frames_per_s_by_micro_batch"].items(),
                                                          key=lambda item: int(item[0]) or 10**6)) + " frames/s."]
    return [""] + lines


def long_video_lines(spec: str, case: dict, encoder_fps: float | None) -> list[str]:
    """An end-to-end run over long videos against the hour-in-60-s target."""
    d, p = case["decode"], case["pipeline"]
    met = "met" if p["seconds_per_hour_of_video"] <= p["target_seconds_per_hour"] else "not met"
    alone = (f" The encoder alone, at its {encoder_fps:,.1f} frames/s, would need "
             f"{p['frames_per_hour_of_video'] / encoder_fps:,.1f} s an hour; decoding beside it takes the rest."
             if encoder_fps else "")
    return ["", f"### Long videos ({spec}, `--moments {case['moments']}`, {case['frames_per_moment']} frames a moment)", "",
            f"{case['files']} file{'s' if case['files'] != 1 else ''} in `{case['folder']}`, {d['video_seconds'] / 3600:.2f} h of video at "
            f"{d['width']}x{d['height']}, {d['fps']:g} fps: {d['moments']:,} moments "
            f"({d['moments_per_hour_of_video']:,.0f} an hour), {d['sampled_frames']:,} sampled frames of which "
            f"{d['distinct_frames']:,} distinct (overlapping moments share frames; each is encoded once).", "",
            "| stage | seconds | seconds per hour of video | hours of video per hour |", "|---|---:|---:|---:|",
            f"| decoding pass alone (PyAV with its threads: decode, cut, sample) | {d['seconds']:,.1f} | "
            f"{d['seconds_per_hour_of_video']:,.1f} | {d['video_seconds'] / max(d['seconds'], 1e-9):,.1f} |",
            f"| whole indexer (decode beside encode, store) | {p['seconds']:,.1f} | {p['seconds_per_hour_of_video']:,.1f} | "
            f"{p['hours_of_video_per_hour']:,.1f} |", "",
            f"Target: an hour of video in at most {p['target_seconds_per_hour']:.0f} s: "
            f"{p['seconds_per_hour_of_video']:,.1f} s ({met}). Encoder: {p['frames_per_s']:,.1f} distinct frames/s "
            f"over the run; the main thread waited {p['wait_s']:.1f} s on decoding, encoded {p['encode_s']:.1f} s, "
            f"stored {p['store_s']:.1f} s." + alone]


def indexing_section(name: str, result: dict) -> list[str]:
    lines = indexing_intro(name, result) + indexing_table(result)
    for spec, entry in result["backbones"].items():
        if entry.get("encoder", {}).get("optimisations"):
            lines += encoder_lines(spec, entry["encoder"])
        for case in entry.get("long_videos", []):
            lines += long_video_lines(spec, case, entry.get("encoder", {}).get("frames_per_s"))
    if result.get("peak_rss_bytes"):
        lines += ["", f"Peak RSS of the indexing process: {result['peak_rss_bytes'] / 2**20:,.0f} MiB (it also holds "
                  f"every decoded frame at once for the encode-alone figure)."]
    return lines + ["", "The encode share is the encoder's time alone over the pipeline's wall time: near 1 the "
                    "pipeline is encode-bound (the CPU case); far below 1 something else bounds it. The main thread "
                    "feeds the encoder and stores the features while worker threads or processes decode ahead.", ""]


def training_section(name: str, result: dict) -> list[str]:
    return [f"## Training throughput ({name}: {result['device']}, {_machine_name(result)})", "",
            f"Head training from cached features: {result['videos']} videos, batch {result['batch_size']}, "
            f"{result['epochs']} epochs, 1-layer temporal encoders.", "",
            "| method | steps/s |", "|---|---:|",
            *[f"| {m} | {v['steps_per_s']:.2f} |" for m, v in result["methods"].items()], ""]


def storage_section(name: str, result: dict) -> list[str]:
    parts = ", ".join(f"{k} {v:,} B" for k, v in result["bytes_per_video"].items())
    lines = [f"## Storage ({name})", "",
             f"{result['videos']} videos, {result['frames']} frames each, backbone `{result['backbone']}`: "
             f"{parts} per video; {result['index_bytes']:,} bytes on disk in all."]
    if "explorer" in result:
        e = result["explorer"]
        lines.append(f"The explorer's service at rest after one query per method ({', '.join(e['methods'])}): "
                     f"{e['rss_bytes_at_rest'] / 2**20:.0f} MiB resident (the Python process with torch "
                     f"loaded: {e['rss_bytes_before'] / 2**20:.0f} MiB).")
        lines += demo_latency_table(e)
    return lines + [f"Peak RSS of the measuring process: {result.get('peak_rss_bytes', 0) / 2**20:.0f} MiB.", ""]


def demo_latency_table(explorer: dict) -> list[str]:
    """One query through the explorer's query service, end to end, per method."""
    latency = explorer.get("query_latency")
    if not latency:
        return []
    lines = ["", f"Text-to-video latency through the query service ({explorer['queries']} queries after a first one; ms):",
             "", "| method | p50 | p99 | encode p50 | stage 1 p50 | re-rank p50 |", "|---|---:|---:|---:|---:|---:|"]
    return lines + [f"| {m} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['encode_ms_p50_ms']:.1f} | "
                    f"{r['search_ms_p50_ms']:.2f} | {r['rerank_ms_p50_ms']:.2f} |" for m, r in latency.items()]


def scale_section(name: str, result: dict) -> list[str]:
    """One row per index size of the scale suite."""
    lines = [f"## Index scale ({name}: {result['machine'].get('cpus', '?')} CPU cores)", "",
             f"Real indexes of N synthetic moments ({result['frames']} frames x {result['dim']}-d, {result['vectors']}) "
             f"built through the writer, {result['commit_every']} moments a commit; {result['queries']} queries. "
             "Commit times are medians of 20 commits at the start and at the end of the same build; open is a fresh "
             "process opening the index for search with its stored structure, first query included; latencies are "
             f"one query (stage 1, the re-rank for the re-ranking head, {result.get('rerank_method', '?')}, "
             "the hits looked up)."
             + (f" Note: {result['note']}." if result.get("note") else ""), "",
             "| N | structure | segments | commit first / at N (ms) | build (s) | prime meanp / re-rank head (s) "
             "| open (s) | RSS (MB) | meanp p50 / p99 (ms) | re-rank head p50 / p99 (ms) | recall@10 | disk (GB) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["by_size"]:
        lines.append(f"| {r['size']:,} | {r['structure']} | {r['segments']} | {r['commit_ms_first']:.1f} / "
                     f"{r['commit_ms']:.1f} | {r['build_s']:.0f} | {r['prime_s']:.0f} / {r['rerank_prime_s']:.0f} | "
                     f"{r['open_s']:.2f} | {r['rss_mb']:,.0f} | {r['query_p50_ms']:.2f} / {r['query_p99_ms']:.2f} | "
                     f"{r['rerank_p50_ms']:.1f} / {r['rerank_p99_ms']:.1f} | {r['recall_at_10']:.3f} | "
                     f"{r['disk_bytes'] / 1e9:.2f} |")
    return lines + [""]


def suite_section(name: str, result: dict) -> list[str]:
    """The section for one suite's JSON, told apart by the keys it holds."""
    if "rows" in result:
        return query_section(name, result)
    if "backbones" in result:
        return indexing_section(name, result)
    if "methods" in result:
        return training_section(name, result)
    if "bytes_per_video" in result:
        return storage_section(name, result)
    if "by_size" in result:
        return scale_section(name, result)
    return []


def render_performance(results: dict[str, dict]) -> str:
    """docs/PERFORMANCE.md from the suites' JSON (name -> parsed JSON)."""
    lines = ["# Performance", "",
             "Generated by `python -m vtr_core bench report` from the JSON files in docs/bench/ (each written by "
             "`python -m vtr_core bench SUITE --json docs/bench/SUITE-DEVICE.json`). Times are p50 / p99 in "
             "milliseconds over repeated runs of one query; every figure of a table comes from one run.", ""]
    goal_lines = targets(results)
    if goal_lines:
        lines += ["## Targets", "", *goal_lines, ""]
    for name, result in sorted(results.items()):
        lines += suite_section(name, result)
    return "\n".join(lines)


def two_stage_accuracy(results_json: str | Path) -> str:
    """The accuracy side of the two-stage trade-off, from `report`'s docs/results.json."""
    path = Path(results_json)
    if not path.is_file():
        return ""
    study = json.loads(path.read_text()).get("two_stage")
    if not study:
        return ""
    rows = {str(r["k"]): r["R@1"] for r in study["rows"]}
    if "all pairs" not in rows or "50" not in rows:
        return ""
    return (f"Accuracy of the two-stage search (eercf, test300, {study['queries']} queries; docs/RESULTS.md): "
            f"R@1 {rows['50']:.1f} at k = 50 against {rows['all pairs']:.1f} with fine scoring of all pairs, "
            f"a difference of {rows['50'] - rows['all pairs']:+.1f} points (target: within 0.5).")


def write_performance(bench_dir: str | Path, output: str | Path, results_json: str | Path | None = None) -> None:
    """Render every JSON file in `bench_dir` (and the two-stage accuracy from `results_json`) to `output`."""
    results = {p.stem: json.loads(p.read_text()) for p in sorted(Path(bench_dir).glob("*.json"))}
    text = render_performance(results)
    accuracy = two_stage_accuracy(results_json) if results_json else ""
    atomic_write_bytes(output, (text + ("\n" + accuracy + "\n" if accuracy else "")).encode())
