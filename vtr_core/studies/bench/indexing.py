"""The indexing suite: videos/s and frames/s for decode alone (and its scaling with threads), the
decode workers alone, encode alone and the whole pipeline, per backbone (clip backbones with
freshly initialised weights the benchmark saves), with where the main thread's time went and, on
a GPU, its utilisation.

Apart from those, `encoder_speed` measures the frame encoder by itself: frames/s at the indexer's
batch and torch's threads, at 1 thread, by micro-batch and, for the lite backbone, each CPU
optimisation against the one before (every variant timed in the same rounds, interleaved, since
shared machines are noisy), and hours of video encoded per hour at a given frames-per-hour figure.
Given a folder of long videos, the first backbone also indexes them end to end (long_videos.py).

The indexer's modules are imported inside the functions, so importing the benchmarks stays light.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vtr_core.errors import VtrError
from vtr_core.studies.bench.common import device_sync, machine
from vtr_core.studies.bench.memory import peak_rss_bytes


def random_clip_spec(arch: str, folder: str | Path) -> str:
    """A clip backbone spec with freshly initialised weights saved to `folder`: speed does not
    depend on the values, and no weights need downloading."""
    import open_clip

    path = Path(folder) / f"{arch}-random.pt"
    if not path.is_file():
        torch.manual_seed(0)
        torch.save({"state_dict": open_clip.create_model(arch).state_dict()}, path)
    return f"clip:{arch}/{path}"


class GpuUtilisation:
    """Samples the GPU's busy share (NVML, through torch) in a thread while a block runs; None
    where NVML is missing."""

    def __init__(self, device: str, every_s: float = 0.1):
        self.device, self.every_s, self.samples = device, every_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no pynvml / NVML: report nothing rather than a guess
                return

    def __enter__(self) -> "GpuUtilisation":
        if self.device.startswith("cuda"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean_percent(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


@dataclass
class Workload:
    """What every backbone of the suite indexes: the same linked videos and decoded frames."""

    folder: Path  # links to the videos, `copies` names per video
    scratch: Path  # where the indexes are written
    videos: int  # videos in `folder`
    frames: np.ndarray  # every video's decoded frames, for the encode-alone figure
    num_frames: int
    workers: int


def _rates(seconds: float, videos: int, frames: int) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "videos_per_s": round(videos / seconds, 2), "frames_per_s": round(frames / seconds, 1)}


def decode_alone(paths: list[Path], num_frames: int) -> tuple[list[np.ndarray], dict]:
    """Every video decoded once on one thread: the frames, and the rates."""
    from vtr_core.video import read_video

    started = time.perf_counter()
    decoded = [read_video(p, num_frames).frames for p in paths]
    decode_s = time.perf_counter() - started
    return decoded, {**_rates(decode_s, len(paths), len(paths) * num_frames), "threads": 1}


def link_copies(paths: list[Path], copies: int, folder: Path) -> None:
    """`copies` symbolic links per video in a new `folder`, each under another name."""
    folder.mkdir()
    for copy in range(copies):
        for p in paths:
            (folder / f"{p.stem}-{copy}{p.suffix}").symlink_to(p.resolve())


def decode_scaling(listed: list[Path], num_frames: int, workers: int) -> dict[str, float]:
    """Frames/s of decoding alone on 1, 2, 4, ... threads: the ceiling of any pipeline fed by
    CPU decoding."""
    from vtr_core.video import read_video

    scaling = {}
    for threads in sorted({1, *[2**i for i in range(1, 8) if 2**i <= workers], workers}):
        with ThreadPoolExecutor(threads) as pool:
            began = time.perf_counter()
            list(pool.map(lambda p: read_video(p, num_frames), listed))
            scaling[str(threads)] = round(len(listed) * num_frames / (time.perf_counter() - began), 1)
    return scaling


def decode_workers_alone(listed: list[Path], num_frames: int, workers: int) -> dict[str, dict]:
    """What the indexer's workers do per video (decode, hash, thumbnail strip), in threads and in
    processes: the most the pipeline can be fed."""
    from vtr_core.indexing.workers import decode_ahead
    from vtr_core.video import DEFAULT_MOMENTS

    out = {}
    for mode, processes in (("threads", False), ("processes", True)):
        began = time.perf_counter()
        for _ in decode_ahead([(p, p.stem, num_frames, DEFAULT_MOMENTS) for p in listed], workers, processes):
            pass
        seconds = time.perf_counter() - began
        out[f"decode_workers_{mode}"] = {**_rates(seconds, len(listed), len(listed) * num_frames), "workers": workers}
    return out


def encode_alone(backbone, work: Workload) -> tuple[dict, float]:
    """The encoder alone on every decoded frame, after a warm-up batch: its figures and seconds."""
    batch = 512 if backbone.device.type == "cuda" else 48
    backbone.encode_frames(work.frames[:batch], patch_dtype=torch.float16)  # warm-up; float16 patches as the indexer asks
    sync = device_sync(str(backbone.device))
    if sync:
        sync()
    began = time.perf_counter()
    for start in range(0, len(work.frames), batch):
        backbone.encode_frames(work.frames[start : start + batch], patch_dtype=torch.float16)
    if sync:
        sync()
    encode_s = time.perf_counter() - began
    return {"seconds": round(encode_s, 3), "frames_per_s": round(len(work.frames) / encode_s, 1),
            "videos_per_s": round(work.videos / encode_s, 2), "batch_frames": batch}, encode_s


# ---------------------------------------------------------------- the encoder by itself
ENCODER_FRAMES = 96  # frames per timed variant and round: two indexer batches on a CPU
ENCODER_ROUNDS = 5
MICRO_BATCHES = (4, 8, 16, 32, 0)  # 0: the whole batch at once


def hours_per_hour(frames_per_s: float, frames_per_hour: float) -> float:
    """Hours of video handled per hour of work, when an hour of video yields `frames_per_hour`
    frames (e.g. 12 frames per 32 s moment at a 16 s stride: 2,700)."""
    return frames_per_s * 3600.0 / frames_per_hour


def _encode_all(encode: Callable, frames: np.ndarray, batch: int) -> None:
    for start in range(0, len(frames), batch):
        encode(frames[start : start + batch], patch_dtype=torch.float16)


def interleaved_rates(variants: dict[str, tuple[Callable, int]], frames: np.ndarray, batch: int,
                      rounds: int) -> dict[str, float]:
    """Frames/s of each variant (an encode function and the torch threads it runs on): the median
    over `rounds`, every round timing every variant once, so load on the machine hits all alike."""
    threads_before = torch.get_num_threads()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for name, (encode, threads) in variants.items():  # warm-up: caches, packed weights, thread pools
            torch.set_num_threads(threads)
            encode(frames[:batch], patch_dtype=torch.float16)
        for _ in range(rounds):
            for name, (encode, threads) in variants.items():
                torch.set_num_threads(threads)
                began = time.perf_counter()
                _encode_all(encode, frames, batch)
                seconds[name].append(time.perf_counter() - began)
    finally:
        torch.set_num_threads(threads_before)
    return {name: round(len(frames) / float(np.median(times)), 1) for name, times in seconds.items()}


def lite_encoder(backbone):
    """The backbone's LiteFrameEncoder on a CPU (its optimisations are compared), else None."""
    encoder = getattr(backbone, "frame_encoder", None)
    return encoder if hasattr(encoder, "with_settings") and backbone.device.type == "cpu" else None


def encoder_variants(encoder, threads: int, micro_batch: int) -> dict[str, tuple[Callable, int]]:
    """The lite encoder after each optimisation (named as in OPTIMISATIONS; the last is the
    encoder as configured, unless "as configured" follows) and at the other micro-batch sizes
    ("micro_batch=N"; `micro_batch` is the configured one)."""
    from dataclasses import replace

    from vtr_core.backbones.lite_frames import OPTIMISATIONS

    variants = {name: (encoder.with_settings(settings), threads) for name, settings in OPTIMISATIONS}
    if encoder.settings != OPTIMISATIONS[-1][1]:  # configured otherwise: measured as it is
        variants["as configured"] = (encoder, threads)
    for size in MICRO_BATCHES:
        if size != micro_batch:
            other = encoder.with_settings(replace(encoder.settings, micro_batch=size))
            variants[f"micro_batch={size}"] = (other, threads)
    return variants


def encoder_speed(backbone, frames: np.ndarray, batch: int | None = None, rounds: int = ENCODER_ROUNDS,
                  frames_per_hour: float | None = None, threads: int | None = None) -> dict:
    """The frame encoder alone, at the indexer's batch: frames/s at `threads` (default: torch's,
    as the indexer runs) and at 1, and for lite on a CPU by micro-batch and each optimisation's
    frames/s before and after."""
    batch = batch or (512 if backbone.device.type == "cuda" else 48)
    threads = threads or torch.get_num_threads()
    encoder = lite_encoder(backbone)
    micro_batch = encoder.micro_batch(batch, threads) if encoder is not None else 0
    variants = encoder_variants(encoder, threads, micro_batch) if encoder is not None else {}
    steps = [name for name in variants if not name.startswith("micro_batch=") and name != "as configured"]
    chosen = "as configured" if "as configured" in variants else steps[-1] if steps else "chosen"
    if not steps:
        variants[chosen] = (backbone.encode_frames, threads)
    if threads != 1 and backbone.device.type == "cpu":
        variants["threads=1"] = (variants[chosen][0], 1)
    rates = interleaved_rates(variants, frames, batch, rounds)
    out = {"frames": len(frames), "batch_frames": batch, "rounds": rounds, "torch_threads": threads,
           # read by OpenMP when torch loads: PASSIVE lets waiting threads sleep (a busy machine)
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
           "settings": encoder.describe() if encoder is not None else None, "frames_per_s": rates[chosen],
           "frames_per_s_by_threads": {str(threads): rates[chosen]}}
    if "threads=1" in rates:
        out["frames_per_s_by_threads"]["1"] = rates["threads=1"]
    if encoder is not None:
        out["frames_per_s_by_micro_batch"] = {str(micro_batch): rates[chosen]} | {
            name.split("=")[1]: rate for name, rate in rates.items() if name.startswith("micro_batch=")}
        out["optimisations"] = [
            {"step": name, "frames_per_s": rates[name],
             "ratio_to_previous": round(rates[name] / rates[steps[i - 1]], 3) if i else 1.0,
             "ratio_to_original": round(rates[name] / rates[steps[0]], 3)}
            for i, name in enumerate(steps)]
    if frames_per_hour:
        out["frames_per_hour_of_video"] = frames_per_hour
        out["hours_of_video_per_hour"] = round(hours_per_hour(rates[chosen], frames_per_hour), 2)
        out["seconds_per_hour_of_video"] = round(frames_per_hour / rates[chosen], 1)
    return out


def pipeline_figures(report, videos: int, encode_s: float, gpu_percent: float | None) -> dict:
    """One indexing run's figures from its report."""
    return {
        "seconds": round(report.seconds, 3), "frames_per_s": round(report.frames_encoded / report.seconds, 1),
        "videos_per_s": round(videos / report.seconds, 2), "failed": len(report.failed),
        "decode_processes": report.decode_processes,
        # the main thread's time: waiting on decoders, encoding, storing
        "wait_s": round(report.wait_s, 3), "encode_s": round(report.encode_s, 3), "store_s": round(report.store_s, 3),
        # how much of the pipeline's wall time the encoder alone needs: 1.0 means decoding,
        # writing and scheduling cost nothing extra (encode-bound)
        "encode_share": round(encode_s / report.seconds, 3),
        "gpu_utilisation_percent": gpu_percent,
    }


def pipeline_runs(backbone, work: Workload, encode_s: float, spec_number: int) -> dict[str, dict]:
    """The whole pipeline (index_folder) on the workload. On a GPU it runs twice: decode workers
    as processes (the default there) and as threads."""
    from vtr_core.indexing.indexer import index_folder

    on_gpu = device_sync(str(backbone.device)) is not None
    runs = {}
    for processes in ((True, False) if on_gpu else (False,)):
        with GpuUtilisation(str(backbone.device)) as utilisation:
            report = index_folder(work.folder, work.scratch / f"index-{spec_number}-{processes}", backbone,
                                  num_frames=work.num_frames, decode_workers=work.workers, decode_processes=processes)
        runs["pipeline" if processes or not on_gpu else "pipeline_threads"] = pipeline_figures(
            report, work.videos, encode_s, utilisation.mean_percent)
    return runs


def backbone_entry(spec: str, spec_number: int, device: str, work: Workload,
                   frames_per_hour: float | None = None, long_videos: list[str] | None = None,
                   moments: str = "") -> tuple[str, dict]:
    """One backbone's name in the results (a clip spec without its weights path) and figures;
    each folder of `long_videos` indexed end to end too, with the `moments` policy."""
    from vtr_core.backbones import create_backbone
    from vtr_core.studies.bench.long_videos import long_video_case

    backbone = create_backbone(spec, device)
    encode, encode_s = encode_alone(backbone, work)
    entry = {"id": backbone.id, "encode": encode, **pipeline_runs(backbone, work, encode_s, spec_number)}
    # the encoder by itself; one indexer batch, twice, for backbones without variants (ViT-B-16: 4 frames/s)
    lite = lite_encoder(backbone) is not None
    entry["encoder"] = encoder_speed(backbone, work.frames[: ENCODER_FRAMES if lite else 48],
                                     rounds=ENCODER_ROUNDS if lite else 2, frames_per_hour=frames_per_hour)
    if long_videos:
        entry["long_videos"] = [long_video_case(folder, backbone, moments, work.num_frames, work.workers)
                                for folder in long_videos]
    return (backbone.spec.split("/")[0] if spec.startswith("clip:") else spec), entry


def indexing_suite(video_dir: str | Path, backbone_specs: list[str], device: str = "cpu", num_frames: int = 12,
                   max_videos: int = 24, copies: int = 1, workers: int | None = None,
                   log: Callable[[str], None] = print, frames_per_hour: float | None = None,
                   long_videos: list[str | Path] | None = None, moments: str | None = None) -> dict:
    """Videos/s and frames/s for decode alone, encode alone and the whole pipeline, per backbone,
    and the encoder by itself (`encoder_speed`; hours of video per hour at `frames_per_hour`).
    The first backbone also indexes each folder of `long_videos` with the `moments` policy (default:
    the indexer's).

    `copies` > 1 indexes each video that many times under different names (symbolic links), so a
    fast GPU pipeline runs long enough to be timed; every copy is decoded and encoded again."""
    from vtr_core.indexing import scan_videos
    from vtr_core.indexing.workers import default_decode_workers
    from vtr_core.video import DEFAULT_MOMENTS

    paths = scan_videos(Path(video_dir))[:max_videos]
    if not paths:
        raise VtrError(f"{video_dir}: no videos to benchmark")
    workers = workers or default_decode_workers()
    result = {"videos": len(paths) * copies, "distinct_videos": len(paths), "video_folder": str(video_dir),
              "frames_per_video": num_frames,
              "device": device, "decode_workers": workers, "machine": machine(), "backbones": {}}
    decoded, result["decode"] = decode_alone(paths, num_frames)
    frames = np.concatenate(decoded * copies)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "videos"
        link_copies(paths, copies, folder)
        listed = scan_videos(folder)
        result["decode_scaling"] = decode_scaling(listed, num_frames, workers)
        result.update(decode_workers_alone(listed, num_frames, workers))
        work = Workload(folder, Path(scratch), len(listed), frames, num_frames, workers)
        for spec_number, spec in enumerate(backbone_specs):
            log(f"indexing suite: {spec}")
            long_folders = [str(folder) for folder in long_videos or []] if spec_number == 0 else None
            name, entry = backbone_entry(spec, spec_number, device, work, frames_per_hour, long_folders,
                                         moments or DEFAULT_MOMENTS)
            result["backbones"][name] = entry
    result["peak_rss_bytes"] = peak_rss_bytes()  # this process: the decoded frames held for encode-alone included
    return result
