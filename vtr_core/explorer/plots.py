"""Small charts drawn with numpy and PIL: heat maps, weighted frame strips, patch overlays, bars.

Why not matplotlib: these few fixed charts are a few dozen lines each, render in milliseconds
and add no dependency. Every function returns a PIL image the app shows as is.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vtr_core.retrieval.moment_hits import clock

# viridis at 6 stops; values in [0, 1] are interpolated between them
_STOPS = np.array([[68, 1, 84], [65, 68, 135], [42, 120, 142], [34, 168, 132], [122, 209, 81], [253, 231, 37]], float)
BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
ACCENT = (214, 39, 40)
BAR = (66, 133, 244)


@lru_cache(maxsize=8)
def font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def text_width(text: str, size: int = 12) -> int:
    return int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font(size)))


def colormap(values: np.ndarray) -> np.ndarray:
    """[...] floats in [0, 1] -> uint8 RGB [..., 3] (viridis)."""
    x = np.clip(np.nan_to_num(np.asarray(values, float)), 0.0, 1.0) * (len(_STOPS) - 1)
    low = np.floor(x).astype(int).clip(0, len(_STOPS) - 2)
    frac = (x - low)[..., None]
    return (_STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac).round().astype(np.uint8)


def normalise(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, float)
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high - low < 1e-12 else (values - low) / (high - low)


def _clip_label(text: str, width: int, size: int) -> str:
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def heat_map(matrix: np.ndarray, row_labels: list[str], col_labels: list[str], title: str = "",
             marks: np.ndarray | None = None, cell: int = 34, label_width: int = 220,
             show_values: bool = True, per_row: bool = False) -> Image.Image:
    """A [R, C] matrix as coloured cells with labels; `marks` (bool [R, C]) outlines cells.

    `per_row` colours each row by its own range (what matters when each row is ranked alone).
    """
    matrix = np.atleast_2d(np.asarray(matrix, float))
    rows, cols = matrix.shape
    title_height, label_height = (26 if title else 4), 92
    top = title_height + label_height
    image = Image.new("RGB", (label_width + cols * cell + 12, top + rows * cell + 8), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((8, 5), title, fill=INK, font=font(14))
    colours = colormap(np.stack([normalise(r) for r in matrix]) if per_row else normalise(matrix))
    for c, label in enumerate(col_labels):  # column labels written bottom-up above their column
        tile = Image.new("RGB", (label_height - 4, 14), BACKGROUND)
        ImageDraw.Draw(tile).text((0, 0), _clip_label(label, label_height - 6, 11), fill=INK, font=font(11))
        image.paste(tile.rotate(90, expand=True), (label_width + c * cell + (cell - 14) // 2, title_height))
    for r in range(rows):
        y = top + r * cell
        draw.text((8, y + cell // 2 - 7), _clip_label(row_labels[r], label_width - 14, 12), fill=INK, font=font(12))
        for c in range(cols):
            x = label_width + c * cell
            colour = tuple(int(v) for v in colours[r, c])
            draw.rectangle([x, y, x + cell - 2, y + cell - 2], fill=colour)
            if show_values and cell >= 30:
                value = matrix[r, c]
                text = f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"
                shade = INK if colours[r, c].mean() > 128 else (255, 255, 255)
                draw.text((x + 3, y + cell // 2 - 7), text, fill=shade, font=font(10))
            if marks is not None and marks[r, c]:
                draw.rectangle([x - 1, y - 1, x + cell - 1, y + cell - 1], outline=ACCENT, width=3)
    return image


def frame_bars(frames: list[Image.Image], series: list[tuple[str, list[float]]], labels: list[str] | None = None,
               title: str = "", height: int = 72, bar_height: int = 46) -> Image.Image:
    """Frame thumbnails side by side with one row of bars per series (the largest bar in red)."""
    tiles = [f.resize((max(1, round(f.width * height / f.height)), height)) for f in frames]
    name_width = max([text_width(name, 12) for name, _ in series] + [0]) + 16
    width = name_width + sum(t.width for t in tiles) + 4 * (len(tiles) - 1)
    head = 24 if title else 4
    row = bar_height + 22
    image = Image.new("RGB", (width + 16, head + height + 18 + row * len(series)), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((8, 4), title, fill=INK, font=font(14))
    x = name_width
    for i, tile in enumerate(tiles):
        image.paste(tile, (x, head))
        if labels:
            draw.text((x + 2, head + height + 2), _clip_label(labels[i], tile.width - 4, 11), fill=INK, font=font(11))
        x += tile.width + 4
    top = head + height + 18
    for s, (name, weights) in enumerate(series):
        weights = np.asarray(weights, float)
        base = top + s * row + bar_height
        draw.text((8, base - bar_height // 2 - 7), name, fill=INK, font=font(12))
        low = min(0.0, float(weights.min()))
        span = max(float(weights.max()) - low, 1e-12)
        best = int(weights.argmax())
        x = name_width
        for i, tile in enumerate(tiles):
            bar = round(bar_height * (weights[i] - low) / span)
            draw.rectangle([x + 6, base - bar, x + tile.width - 6, base], fill=ACCENT if i == best else BAR)
            draw.text((x + 6, base + 3), f"{weights[i]:.2f}", fill=INK, font=font(11))
            x += tile.width + 4
    return image


def patch_overlay(frame: Image.Image, weights: np.ndarray, grid: tuple[int, int], size: int = 320,
                  alpha: float = 0.55) -> Image.Image:
    """A [P] patch weight vector on its grid, upsampled and blended over the frame.

    The backbone looks at a centre square crop, so the heat map covers that crop of the frame.
    """
    side = min(frame.width, frame.height)
    left, top = (frame.width - side) // 2, (frame.height - side) // 2
    crop = frame.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    heat = normalise(np.asarray(weights, float).reshape(grid))
    heat_image = Image.fromarray(colormap(heat)).resize((size, size), Image.BILINEAR)
    return Image.blend(crop.convert("RGB"), heat_image, alpha)


def bar_chart(labels: list[str], values: list[float], title: str = "", width: int = 420,
              value_format: str = "{:.3f}") -> Image.Image:
    """Horizontal bars, one per label; negative values extend left of the zero line."""
    values = np.asarray(values, float)
    label_width = max([text_width(label, 12) for label in labels] + [40]) + 16
    row = 26
    head = 26 if title else 6
    image = Image.new("RGB", (label_width + width + 70, head + row * len(labels) + 8), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((8, 5), title, fill=INK, font=font(14))
    span = max(float(np.abs(values).max()) if len(values) else 1.0, 1e-9)
    has_negative = bool((values < 0).any())
    zero = label_width + (width // 2 if has_negative else 0)
    scale = (width // 2 if has_negative else width) / span
    for i, (label, value) in enumerate(zip(labels, values)):
        y = head + i * row
        draw.text((8, y + 5), label, fill=INK, font=font(12))
        end = zero + value * scale
        draw.rectangle([min(zero, end), y + 4, max(zero, end), y + row - 4], fill=BAR if value >= 0 else ACCENT)
        draw.text((max(zero, end) + 4, y + 6), value_format.format(value), fill=INK, font=font(11))
    draw.line([zero, head, zero, head + row * len(labels)], fill=INK)
    return image


def hstack(images: list[Image.Image], gap: int = 8) -> Image.Image:
    """Images side by side, tops aligned, on white."""
    width = sum(i.width for i in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, max(i.height for i in images)), BACKGROUND)
    x = 0
    for image in images:
        out.paste(image, (x, 0))
        x += image.width + gap
    return out


def titled(image: Image.Image, title: str) -> Image.Image:
    """An image with a line of text above it."""
    out = Image.new("RGB", (max(image.width, text_width(title, 14) + 16), image.height + 26), BACKGROUND)
    ImageDraw.Draw(out).text((8, 5), title, fill=INK, font=font(14))
    out.paste(image, (0, 26))
    return out


TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
BAND = ((246, 246, 250), (232, 236, 246))  # alternate moments' backgrounds


def timeline(spans: list[tuple[float, float, float]], duration_s: float, best: int | None = None, title: str = "",
             width: int = 760, height: int = 220) -> Image.Image:
    """A score over a video's time: each (start, end, score) span as a step over its shaded range
    (the `best` one in red), joined through the middles, with the time axis in m:ss."""
    left, right, top, bottom = 64, 16, 30 if title else 10, 36
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((8, 6), title, fill=INK, font=font(13))
    if not spans:
        return image
    plot_w, plot_h = width - left - right, height - top - bottom
    end = max([duration_s] + [e for _, e, _ in spans] + [1e-6])
    scores = np.array([s for _, _, s in spans], float)
    low, high = float(scores.min()), float(scores.max())
    pad = (high - low) * 0.12 if high > low else max(abs(high) * 0.05, 0.01)
    low, high = low - pad, high + pad

    def x(t: float) -> float:
        return left + plot_w * min(max(t, 0.0), end) / end

    def y(score: float) -> float:
        return top + plot_h * (1.0 - (score - low) / (high - low))

    for i, (start, stop, _) in enumerate(spans):  # the moments, shaded in turn, a tick at each start
        draw.rectangle([x(start), top, max(x(start) + 1, x(stop)), top + plot_h], fill=BAND[i % 2])
        draw.line([x(start), top + plot_h, x(start), top + plot_h + 5], fill=INK)
    if len(spans) > 1:
        draw.line([(x((a + b) / 2), y(s)) for a, b, s in spans], fill=(150, 150, 150), width=1)
    for i, (start, stop, score) in enumerate(spans):
        draw.line([x(start), y(score), max(x(start) + 2, x(stop)), y(score)], fill=ACCENT if i == best else BAR,
                  width=4 if i == best else 3)
    if best is not None:
        a, b, s = spans[best]
        label = f"{s:.3f}"
        draw.text((min(x((a + b) / 2) - text_width(label, 11) / 2, width - right - text_width(label, 11)),
                   max(top, y(s) - 16)), label, fill=ACCENT, font=font(11))
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=INK)
    for value in (low + pad, high - pad):
        draw.text((6, y(value) - 7), f"{value:.3f}", fill=INK, font=font(11))
    step = next((s for s in TICK_STEPS_S if end / s <= 8), TICK_STEPS_S[-1])
    for k in range(int(end // step) + 1):
        label = clock(k * step)
        draw.text((x(k * step) - text_width(label, 11) / 2, top + plot_h + 8), label, fill=INK, font=font(11))
    return image
