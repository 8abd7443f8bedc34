"""Shared fixtures: real video files made with PyAV, and the backbones (built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MSRVTT = Path(os.environ.get("VTR_MSRVTT_DIR", REPO.parent / "shared" / "data" / "msrvtt"))


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
def msrvtt_dir() -> Path:
    if not (MSRVTT / "videos").is_dir():
        pytest.skip(f"MSR-VTT data not found at {MSRVTT}")
    return MSRVTT
