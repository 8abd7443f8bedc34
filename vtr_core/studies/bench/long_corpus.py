"""A long video for the throughput benchmark, made from short clips (`bench long-corpus`).

Decoding cost depends on resolution, frame rate and how the file was encoded, so the benchmark's
long files are made the way camera and web video is: H.264 with B-frames (x264 `veryfast`, CRF 23)
at a chosen size and frame rate, from real footage (the clips' frames, one after another, each
scaled to the size). Accuracy is not measured on these files (build-moments makes that benchmark).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from vtr_core.errors import VtrError


def write_long_video(clips: list[Path], out: Path, seconds: float, width: int, height: int, fps: int) -> dict:
    """Frames of `clips` in order, scaled to width x height and stamped at `fps`, until `seconds`
    of video are written (or the clips run out): the file's length and frame count."""
    import av

    wanted = round(seconds * fps)
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for clip in clips:
            with av.open(str(clip)) as source:
                for frame in source.decode(video=0):
                    if written >= wanted:
                        break
                    scaled = frame.reformat(width=width, height=height, format="yuv420p")
                    scaled.pts, scaled.time_base = written, Fraction(1, fps)
                    container.mux(stream.encode(scaled))
                    written += 1
            if written >= wanted:
                break
        container.mux(stream.encode(None))
    if written == 0:
        raise VtrError(f"no frames decoded from the {len(clips)} clips given")
    return {"file": str(out), "frames": written, "seconds": round(written / fps, 3), "width": width,
            "height": height, "fps": fps}
