"""Shared fixtures: real video files made with PyAV, and the backbones (built once per session)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MSRVTT = Path(os.environ.get("VTR_MSRVTT_DIR", REPO.parent / "shared" / "data" / "msrvtt"))


@pytest.fixture(scope="session", autouse=True)
def temp_files_under_pytest(tmp_path_factory):
    """Temporary files of the test process (gradio_client leaves an empty folder in the temp
    directory for each file it downloads) go under pytest's folder, which pytest prunes."""
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = None


# a real open_clip architecture small enough to build in a test (32-d embeddings)
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def save_tiny_clip(folder: Path, name: str, seed: int = 0):
    """Register TINY_CLIP with open_clip as `name` and save seeded weights the way users save
    checkpoints: (the model, the checkpoint path)."""
    import json

    import open_clip
    import torch

    (folder / f"{name}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / f"{name}.json")
    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    torch.save({"state_dict": model.state_dict()}, folder / f"{name}.pt")
    return model, folder / f"{name}.pt"


def write_video(
    path: Path,
    num_frames: int = 30,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    seed: int = 0,
    codec: str = "libx264",
    colour: tuple[int, int, int] | None = None,
) -> Path:
    """An H.264 mp4 whose frames differ from each other (a moving bar over a coloured ground)."""
    import av

    width, height = size
    rng = np.random.default_rng(seed)
    base = np.array(colour if colour is not None else rng.integers(0, 256, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = base
            x = (i * 7) % width
            image[:, x : x + 8] = 255 - base
            image[: height // 4] = (base.astype(int) + 8 * i) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_fast_video(path: Path, num_frames: int, fps: int = 1, size: tuple[int, int] = (64, 48), gop: int = 60,
                     faststart: bool = False) -> Path:
    """An H.264 mp4 written cheaply: frames made directly in yuv420p, x264 ultrafast with no
    lookahead. Two hours at 1 fps in tiny frames (7,200 frames) take about a second; two 8K
    frames under a second, though x264 holds about 0.5 GB while it encodes them. `faststart`
    puts the mp4 index (moov) before the frames, as streaming files do."""
    import av

    width, height = size
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop), "threads": "1"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            planes = np.full((height * 3 // 2, width), 128, np.uint8)  # grey chroma
            planes[:height] = 40 + (i * 37) % 160  # a luma level per frame
            x = (i * 5) % max(1, width - 8)
            planes[: height // 4, x : x + 8] = 255  # and a moving mark
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An mp4/m4a holding one AAC audio stream (a tone) and no video stream."""
    import av

    samples_per_frame = 1024
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for i in range(max(1, int(seconds * rate) // samples_per_frame)):
            t = (i * samples_per_frame + np.arange(samples_per_frame)) / rate
            frame = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i * samples_per_frame
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def set_file_permission_override(enabled: bool) -> None:
    """Raise or drop root's override of file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)
    in this thread's effective capabilities; threads it starts afterwards inherit the state.

    Root reads chmod-000 files, so a test of an unreadable file drops the override: the process
    stays root (it can still read root's own files, such as an interpreter under /root) but file
    permissions now apply to it. Nothing to do when not root.
    """
    if os.geteuid() != 0:
        return
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, this thread
    dac_bits = (1 << 1) | (1 << 2)
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    data[0].effective = data[0].effective | dac_bits if enabled else data[0].effective & ~dac_bits
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4")


@pytest.fixture
def video_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(5):
        write_video(folder / f"clip{i}.mp4", num_frames=20 + 5 * i, seed=i)
    return folder


@pytest.fixture(scope="session")
def lite_backbone():
    from vtr_core.backbones import create_backbone

    return create_backbone("lite", "cpu")


@pytest.fixture(scope="session")
def default_backbone():
    """The offline backbone the shipped heads and the demo index were made with."""
    from vtr_core.backbones import create_backbone, offline_default

    return create_backbone(offline_default(), "cpu")


@pytest.fixture(scope="session")
def msrvtt_dir() -> Path:
    if not (MSRVTT / "videos").is_dir():
        pytest.skip(f"MSR-VTT data not found at {MSRVTT}")
    return MSRVTT
