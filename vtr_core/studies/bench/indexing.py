"""The indexing suite: videos/s and frames/s for decode alone (and its scaling with threads), the
decode workers alone, encode alone and the whole pipeline, per backbone (clip backbones with
freshly initialised weights the benchmark saves), with where the main thread's time went and, on
a GPU, its utilisation.

The indexer's modules are imported inside the functions, so importing the benchmarks stays light.
"""

from __future__ import annotations

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
    from vtr_core.video.moments import DEFAULT_MOMENTS

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


def backbone_entry(spec: str, spec_number: int, device: str, work: Workload) -> tuple[str, dict]:
    """One backbone's name in the results (a clip spec without its weights path) and figures."""
    from vtr_core.backbones import create_backbone

    backbone = create_backbone(spec, device)
    encode, encode_s = encode_alone(backbone, work)
    entry = {"id": backbone.id, "encode": encode, **pipeline_runs(backbone, work, encode_s, spec_number)}
    return (backbone.spec.split("/")[0] if spec.startswith("clip:") else spec), entry


def indexing_suite(video_dir: str | Path, backbone_specs: list[str], device: str = "cpu", num_frames: int = 12,
                   max_videos: int = 24, copies: int = 1, workers: int | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Videos/s and frames/s for decode alone, encode alone and the whole pipeline, per backbone.

    `copies` > 1 indexes each video that many times under different names (symbolic links), so a
    fast GPU pipeline runs long enough to be timed; every copy is decoded and encoded again."""
    from vtr_core.indexing import scan_videos
    from vtr_core.indexing.workers import default_decode_workers

    paths = scan_videos(Path(video_dir))[:max_videos]
    if not paths:
        raise VtrError(f"{video_dir}: no videos to benchmark")
    workers = workers or default_decode_workers()
    result = {"videos": len(paths) * copies, "distinct_videos": len(paths), "frames_per_video": num_frames,
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
            name, entry = backbone_entry(spec, spec_number, device, work)
            result["backbones"][name] = entry
    result["peak_rss_bytes"] = peak_rss_bytes()  # this process: the decoded frames held for encode-alone included
    return result
