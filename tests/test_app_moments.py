"""Moment search in the explorer, on a collection holding an 80 s video cut into 10 s windows
whose only cartoon stretch (frames of the demo's bird clip, bbb_02) runs from 20 s to 30 s, beside
two short demo clips (one moment each).

In process: hits carry their range, the query's timeline over a video matches the head's own
scores computed here from the stored features, explanations and captions work per moment, and an
uploaded long file gets a caption timeline. In the real app (a subprocess) driven by Chromium: a
click on the moment at 20 s plays the video from 20 s, and the API takes moments.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from tests.app_server import Page, headless_chromium, running_app
from tests.conftest import REPO
from vtr_core.errors import VtrError
from vtr_core.explorer import explain_panels, panels, plots
from vtr_core.explorer.records import MomentSpan
from vtr_core.explorer.service import Explorer
from vtr_core.indexing.indexer import index_folder
from vtr_core.methods import METHODS

BIRD = "a purple bird gets knocked off a branch by a falling nut"  # a caption of bbb_02
CAPTIONS = REPO / "assets" / "captions.jsonl"
LONG_S, WINDOW_S, BIRD_AT = 80, 10, (20.0, 30.0)
WINDOWS = [(float(s), float(s + WINDOW_S)) for s in range(0, LONG_S, WINDOW_S)]
SHORT = ("bbb_05", "bbb_06")


def write_long_video(path: Path, source: Path, seconds: int = LONG_S, fps: int = 10,
                     insert: tuple[float, float] = BIRD_AT, size: tuple[int, int] = (320, 180)) -> Path:
    """An H.264 mp4 of moving colour gradients with `source`'s frames stretched over `insert`."""
    with av.open(str(source)) as container:
        inserted = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            t = i / fps
            if insert[0] <= t < insert[1]:
                frame = inserted[min(int((t - insert[0]) / (insert[1] - insert[0]) * len(inserted)), len(inserted) - 1)]
                frame = np.asarray(Image.fromarray(frame).resize((width, height)))
            else:
                frame = np.stack([(xs + 3 * i) % 256, (2 * ys + 3 * i) % 256, np.full_like(xs, 5 * i % 256)], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, np.uint8), "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def long_collection(tmp_path_factory, lite_backbone) -> Path:
    """(the index) of long.mp4 in 10 s windows and two short demo clips, indexed by the library."""
    root = tmp_path_factory.mktemp("moments")
    videos = root / "videos"
    videos.mkdir()
    write_long_video(videos / "long.mp4", REPO / "assets" / "videos" / "bbb_02.mp4")
    for name in SHORT:
        shutil.copy(REPO / "assets" / "videos" / f"{name}.mp4", videos)
    report = index_folder(videos, root / "index", lite_backbone, moments=f"window:{WINDOW_S}/{WINDOW_S}")
    assert not report.failed
    return root / "index"


@pytest.fixture(scope="module")
def explorer(long_collection, tmp_path_factory) -> Explorer:
    return Explorer(long_collection, device="cpu", captions=CAPTIONS, workdir=tmp_path_factory.mktemp("workdir"))


def test_the_long_video_is_searched_as_windows(explorer):
    spans = explorer.queries.moments("long")
    assert [(s.start_s, s.end_s) for s in spans] == WINDOWS and len({s.moment_id for s in spans}) == len(WINDOWS)
    assert [(s.start_s, s.end_s) for s in explorer.queries.moments("bbb_05")] == [(0.0, 7.5)]
    info = explorer.collection.info()
    assert (info.videos, info.moments, info.moment_policy) == (3, 10, "window:10/10")
    assert "**3 clips** (10 moments, cut by `window:10/10`)" in panels.info_text(info)


@pytest.mark.parametrize("method", list(METHODS))
def test_hits_are_moments_with_their_range(explorer, method):
    best = explorer.queries.text_to_video(BIRD, method, top_k=10)  # each video's best moment (the default)
    assert sorted(h.video_id for h in best.hits) == ["bbb_05", "bbb_06", "long"]
    long = next(h for h in best.hits if h.video_id == "long")
    assert (long.start_s, long.end_s, long.whole, long.label) == (*BIRD_AT, False, "long 0:20-0:30")
    assert explorer.collection.index.moments[explorer.collection.index.row_of_moment(long.moment_id)].start_s == 20.0
    short = next(h for h in best.hits if h.video_id == "bbb_05")
    assert (short.start_s, short.end_s, short.whole, short.label) == (0.0, 7.5, True, "bbb_05")
    row = panels.hit_rows(best)[best.hits.index(long)]
    assert row[:4] == [long.rank, "long", 20.0, 30.0] and row[4] == round(long.score, 4)
    assert f"#{long.rank} long 0:20-0:30 · {long.score:.3f}" in panels.gallery_items(best)[best.hits.index(long)][1]

    every = explorer.queries.text_to_video(BIRD, method, top_k=30, per_video=False)
    assert sorted((h.start_s, h.end_s) for h in every.hits if h.video_id == "long") == WINDOWS
    assert len(every.hits) == 10 and every.hits[0].video_id == "long" and every.hits[0].start_s == 20.0
    # merged: in a collection this small every window of the long video is in the pool, and they all touch
    merged = explorer.queries.text_to_video(BIRD, method, top_k=30, per_video=False, merge=True)
    long = next(h for h in merged.hits if h.video_id == "long")
    assert (long.start_s, long.end_s, long.whole, long.label) == (0.0, 80.0, True, "long")


def head_scores(explorer: Explorer, method: str, query: str, video_id: str) -> list[float]:
    """The head's full score of a query against each moment of a video, from the stored features."""
    head, _ = explorer.queries.head(method)
    index = explorer.collection.index
    rows = index.rows_of(video_id)
    with torch.no_grad():
        text = explorer.backbone.encode_text([query])
        frames = torch.from_numpy(np.asarray(index.frame_features(rows), np.float32))
        patches = torch.from_numpy(np.asarray(index.patch_tokens(rows), np.float32))
        raw = index.raw_features(rows)
        raw = torch.from_numpy(np.asarray(raw, np.float32)) if raw is not None else None
        return head.similarity(head.text_state(text), head.video_state(frames, patches, raw))[0].tolist()


@pytest.mark.parametrize("method", list(METHODS))
def test_timeline_is_the_heads_score_of_every_moment(explorer, method):
    timeline = explorer.queries.timeline(BIRD, "long", method)
    assert [(p.start_s, p.end_s) for p in timeline.points] == WINDOWS and timeline.duration_s == LONG_S
    assert [p.score for p in timeline.points] == pytest.approx(head_scores(explorer, method, BIRD, "long"), abs=1e-5)
    assert timeline.best == 2 and timeline.points[2].start_s == 20.0
    hit = next(h for h in explorer.queries.text_to_video(BIRD, method).hits if h.video_id == "long")
    assert hit.score == pytest.approx(timeline.points[2].score, abs=1e-5)
    short = explorer.queries.timeline(BIRD, "bbb_06", method)
    assert len(short.points) == 1 and short.points[0].score == pytest.approx(
        head_scores(explorer, method, BIRD, "bbb_06")[0], abs=1e-5)

    chart = np.asarray(panels.timeline_chart(timeline))
    assert chart.shape == (220, 760, 3)
    left, width = 64, 760 - 64 - 16  # plots.timeline's margins: the best window's step is red, the others not

    def has_accent(seconds: float) -> bool:
        return bool((chart[:, round(left + width * seconds / LONG_S)] == plots.ACCENT).all(-1).any())

    assert has_accent(25.0) and not any(has_accent(t) for t in (5.0, 45.0, 75.0))


def test_explain_takes_a_moment(explorer):
    queries = explorer.queries
    view = queries.explain(BIRD, "long", "eercf")  # default: the video's best moment for the query
    assert (view.moment.start_s, view.moment.end_s, view.label, view.whole) == (*BIRD_AT, "long 0:20-0:30", False)
    assert len(view.frames) == 12 and all(20.0 <= t < 30.0 for t in view.frame_times_s)
    timeline = queries.timeline(BIRD, "long", "eercf")
    assert view.explanation.score == pytest.approx(timeline.points[2].score, abs=1e-4)
    later = queries.explain(BIRD, "long", "eercf", moment_id=timeline.points[5].moment_id)
    assert (later.moment.start_s, later.moment.end_s) == WINDOWS[5]
    assert all(50.0 <= t < 60.0 for t in later.frame_times_s)
    assert later.explanation.score == pytest.approx(timeline.points[5].score, abs=1e-4)
    assert explain_panels.video_time(later.frame_times_s[0]) == f"0:{later.frame_times_s[0]:04.1f}"
    assert explain_panels.video_time(75.25) == "1:15.2" and explain_panels.video_time(3599.96) == "60:00.0"
    shown = explain_panels.render_explanation(later)
    assert shown["frames"].image.width > 600
    assert queries.explain(BIRD, "bbb_05", "meanp").label == "bbb_05"
    other = queries.moments("bbb_05")[0].moment_id
    with pytest.raises(VtrError, match=f"no moment {other} in clip 'long'"):
        queries.explain(BIRD, "long", "meanp", moment_id=other)


def test_video_to_text_per_moment_and_a_caption_timeline(explorer, long_collection, tmp_path):
    queries = explorer.queries
    result = queries.video_to_text("long", "meanp", top_k=5)
    assert [(m.moment.start_s, m.moment.end_s) for m in result.timeline] == WINDOWS
    tops = [m.hits[0].score for m in result.timeline]
    chosen = tops.index(max(tops))  # no moment asked: the one whose best caption scores highest
    assert result.moment == result.timeline[chosen].moment and not result.asked and not result.whole
    assert [h.caption for h in result.hits[:3]] == [h.caption for h in result.timeline[chosen].hits]
    assert f"ranked for **long** {result.moment.label} (the moment whose best caption" in panels.caption_summary(result)
    rows = panels.caption_timeline_rows(result)
    assert [r[:3] for r in rows] == [[i + 1, a, b] for i, (a, b) in enumerate(WINDOWS)]
    assert [r[3] for r in rows] == [m.hits[0].caption for m in result.timeline]

    asked = queries.video_to_text("long", "meanp", top_k=5, moment_id=result.timeline[6].moment.moment_id)
    assert asked.asked and asked.moment == result.timeline[6].moment and "(as asked, of 8 moments)" in \
        panels.caption_summary(asked)
    assert asked.hits[0].caption == result.timeline[6].hits[0].caption
    with pytest.raises(VtrError, match="no moment"):
        queries.video_to_text("long", "meanp", moment_id=queries.moments("bbb_06")[0].moment_id)
    short = queries.video_to_text("bbb_06", "meanp", top_k=5)
    assert short.timeline == [] and short.whole and panels.caption_timeline_rows(short) == []

    # an uploaded long file is cut by the index's own policy: the same windows, the same best captions
    upload = shutil.copy(long_collection.parent / "videos" / "long.mp4", tmp_path / "my upload.mp4")
    mine = queries.video_to_text(str(upload), "meanp", top_k=5)
    assert mine.video == "my upload.mp4" and [(m.moment.start_s, m.moment.end_s) for m in mine.timeline] == WINDOWS
    assert all(m.moment.moment_id == -1 for m in mine.timeline) and len(mine.frames) == 12
    assert [m.hits[0].caption for m in mine.timeline] == [m.hits[0].caption for m in result.timeline]
    assert [m.hits[0].score for m in mine.timeline] == pytest.approx(tops, abs=1e-3)
    assert mine.moment == MomentSpan(-1, *WINDOWS[chosen])


# -- the real app ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_app(long_collection, tmp_path_factory) -> str:
    work = tmp_path_factory.mktemp("moments-app")
    with running_app(work, "--index", str(long_collection), "--captions", str(CAPTIONS)) as (url, _):
        yield url


@pytest.fixture
def browser():
    yield from headless_chromium()


def table(value) -> list[list]:
    return value["data"] if isinstance(value, dict) else value


def test_the_api_takes_moments(long_app, explorer):
    from gradio_client import Client

    client = Client(long_app, verbose=False)
    gallery, hits, *_ = client.predict(BIRD, "meanp", "none", 10, api_name="/search")
    assert [row[1] for row in table(hits)].count("long") == 1 and "long 0:20-0:30" in gallery[0]["caption"]
    assert table(hits)[0][:4] == [1, "long", 20.0, 30.0]
    _, hits, *_ = client.predict(BIRD, "meanp", "none", 30, "every moment", api_name="/search")
    assert sorted((row[2], row[3]) for row in table(hits) if row[1] == "long") == WINDOWS

    later = explorer.queries.moments("long")[5].moment_id
    frames = client.predict(BIRD, "long", "eercf", 0, later, api_name="/explain")[0]
    assert Image.open(frames).width > 600
    summary, _, timeline = client.predict(None, "long", "meanp", None, 5, later, api_name="/captions")
    assert "ranked for **long** 0:50-1:00 (as asked, of 8 moments)" in summary and timeline["visible"]
    assert [row[1:3] for row in table(timeline["value"])] == [list(w) for w in WINDOWS]


def playing(page: Page) -> tuple[float, str] | None:
    """(currentTime, src) of the player's <video> once its metadata has loaded, else None."""
    state = page.driver.execute_script(
        "const v = document.querySelector('#player video');"
        "return v && v.readyState >= 1 ? [v.currentTime, v.currentSrc] : null;")
    return (float(state[0]), state[1]) if state else None


def test_a_click_plays_the_video_from_the_moments_start(long_app, browser):
    from selenium.webdriver.common.by import By

    page = Page(browser)
    browser.get(long_app)
    page.wait.until(lambda _: page.css("#query textarea"))
    page.css("#query textarea")[0].send_keys(BIRD)
    browser.find_element(By.ID, "search-btn").click()
    page.wait.until(lambda _: "long 0:20-0:30" in page.text("gallery-a")
                    and len(page.loaded_images("#gallery-a img")) == 3)
    rows = [line.split()[1] for line in page.text("gallery-a").splitlines() if line.startswith("#")]  # "#1 long ..."
    assert rows.count("long") == 1 and "start (s)" in page.text("table-a")
    player = "const v = document.querySelector('#player video'); return v && v.outerHTML;"

    def click(video_id: str) -> tuple[float, str]:
        """Click a result's thumbnail (in the grid, or the strip under the preview after a first click)."""
        before = browser.execute_script(player)
        label = f"Thumbnail {rows.index(video_id) + 1} of {len(rows)}"
        next(b for b in page.css(f"#gallery-a button[aria-label='{label}']") if b.is_displayed()).click()
        page.wait.until(lambda _: browser.execute_script(player) != before)
        return page.wait.until(lambda _: playing(page))

    at, src = click("long")  # read as soon as the metadata is in: within a second of the start, even while playing
    assert 20.0 - 1.0 < at < 20.0 + 1.0 and src.endswith("/long.mp4#t=20.000")
    page.wait.until(lambda _: page.loaded_images("#timeline img"))
    assert "long 0:20-0:30" in page.text("playing")
    page.shot("moment_played", scroll_to="player")
    at, src = click("bbb_06")  # a whole-clip moment plays from its start
    assert at < 1.0 and src.endswith("/bbb_06.mp4#t=0.000")
    at, _ = click("long")  # and the same moment again seeks again
    assert abs(at - 20.0) < 1.0

    page.open_tab("Explain")  # the clicked moment is the one to explain, for the query that found it
    page.wait.until(lambda _: [e for e in page.css("#explain-moment input")
                               if e.get_attribute("value") == "3. 0:20-0:30"])
    assert page.css("#explain-query textarea")[0].get_attribute("value") == BIRD
    browser.find_element(By.ID, "explain-btn").click()
    page.wait.until(lambda _: page.loaded_images("#frame-attention img"))
    page.shot("moment_explained", scroll_to="frame-attention")
