"""The real app: `python app.py` in a subprocess, called through gradio_client and driven in Chromium.

The browser test uses Debian's `chromium` and `chromium-driver` through Selenium with the system
driver (no browser download); it skips when they are absent. Screenshots of each view are saved
under tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.app_server import ARTIFACTS, Page, headless_chromium, running_app
from tests.conftest import REPO, write_video

BIRD = "a purple bird gets knocked off a branch by a falling nut"  # a caption of bbb_02


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, lite_backbone):
    """The app on 127.0.0.1, with uploads and copies in a temporary work directory."""
    work = tmp_path_factory.mktemp("app")
    # the tests' own folders (under pytest's base temp) may be indexed from the browser
    with running_app(work, "--host", "127.0.0.1", "--video-root", str(tmp_path_factory.getbasetemp())) as (url, _):
        yield url


def test_wrong_index_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "app.py", "--index", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not a video index (no catalogue.sqlite); build one with `index`"]


def table(value) -> list[list]:
    return value["data"] if isinstance(value, dict) else value


def test_every_public_endpoint(app_url, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert endpoints == {"/search", "/captions", "/explain", "/dsl", "/index_folder", "/add_clip", "/collection",
                         "/results"}

    gallery, hits, gallery_b, hits_b, timings = client.predict(BIRD, "eercf", "meanp", 5, api_name="/search")
    assert len(gallery) == 5 and all(os.path.getsize(item["image"]) > 0 for item in gallery)
    assert "bbb_02" in [row[1] for row in table(hits)] and [row[0] for row in table(hits)] == [1, 2, 3, 4, 5]
    assert all(row[7] == "yes" for row in table(hits)) and "stage 1: #" in gallery[0]["caption"]
    # every demo clip is one moment, the whole file: the card names the clip alone, the table its range
    assert all(row[2] == 0.0 and row[3] > 0 for row in table(hits))
    assert gallery[0]["caption"].startswith(f"#1 {table(hits)[0][1]} · ")
    assert len(gallery_b) == 5 and "bbb_02" in [row[1] for row in table(hits_b)]
    assert "eercf" in timings and "meanp" in timings
    with pytest.raises(AppError, match="empty query"):
        client.predict("  ", "meanp", "none", 5, api_name="/search")

    clip = write_video(tmp_path / "upload.mp4", num_frames=40, seed=5)
    summary, rows, timeline = client.predict(handle_file(str(clip)), None, "meanp", None, 6, api_name="/captions")
    assert "ranked for" in summary and len(table(rows)) == 6 and not timeline["visible"]  # a short clip: one moment
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a purple bird on a branch\na car on a road\n")
    _, rows, _ = client.predict(None, "bbb_02", "s3ma", handle_file(str(corpus)), 6, api_name="/captions")
    assert [row[1] for row in table(rows)] == ["a purple bird on a branch", "a car on a road"]
    for name, text, message in (("corpus.csv", "a,b\n", "Invalid file type"),
                                ("corpus.jsonl", "{oops\n", "corpus.jsonl, line 1: not valid JSON")):
        (tmp_path / name).write_text(text)
        with pytest.raises(AppError, match=message):
            client.predict(None, "bbb_02", "meanp", handle_file(str(tmp_path / name)), 6, api_name="/captions")

    outputs = client.predict(BIRD, "bbb_02", "s3ma", 0, api_name="/explain")
    attention, patch, terms, term_table, gates, concepts, concept_map, _ = outputs
    assert os.path.getsize(attention) > 10_000 and os.path.getsize(terms) > 0
    assert patch["visible"] and os.path.getsize(patch["value"]) > 0
    assert concepts["visible"] and "shared" in concepts["value"] and concept_map["visible"]
    assert not gates["visible"] and table(term_table)[-1][0] == "score"
    gates = client.predict(BIRD, "bbb_02", "camoe", 3, api_name="/explain")[4]
    assert gates["visible"] and os.path.getsize(gates["value"]) > 0

    before, after, changes = client.predict("collection captions", "", 5, "meanp", api_name="/dsl")
    assert os.path.getsize(before) > 0 and os.path.getsize(after) > 0 and len(table(changes)) == 5
    with pytest.raises(AppError, match="2 to 24 queries"):
        client.predict("my queries", "just one", 5, "meanp", api_name="/dsl")

    assert "**39 clips**" in client.predict(api_name="/collection")
    status, info = client.predict(handle_file(str(clip)), api_name="/add_clip")
    assert "added **upload**" in status and "**40 clips**" in info
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(2):
        write_video(folder / f"extra{i}.mp4", num_frames=20, seed=20 + i)
    status, info = client.predict(str(folder), api_name="/index_folder")
    assert "indexed 2 new" in status and "**42 clips**" in info
    with pytest.raises(AppError, match="no such folder"):
        client.predict(str(tmp_path / "missing"), api_name="/index_folder")
    gallery, hits, *_ = client.predict("a coloured screen", "meanp", "none", 30, api_name="/search")
    assert {"upload", "extra0", "extra1"} <= {row[1] for row in table(hits)}

    results = table(client.predict(api_name="/results"))
    assert results and results[0][0] == "test300" and len(results[0]) == 12


# -- the browser ------------------------------------------------------------------------------------
@pytest.fixture
def browser():
    yield from headless_chromium()


def test_browser_drives_every_view(app_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = Page(browser)
    wait, css, loaded_images, open_tab = page.wait, page.css, page.loaded_images, page.open_tab

    browser.get(app_url)
    wait.until(lambda _: css("#query textarea"))
    header = browser.find_element(By.ID, "header").text
    assert "device:" in header and "cpu" in header and "lite" in header

    # text to video, side by side with eercf; a click on a result plays it
    css("#query textarea")[0].send_keys(BIRD)
    css("#compare input")[0].click()
    wait.until(lambda _: next((o for o in css("[role=option]") if o.text.strip() == "eercf"), None)).click()
    browser.find_element(By.ID, "search-btn").click()
    wait.until(lambda _: "eercf" in browser.find_element(By.ID, "timings").text)
    wait.until(lambda _: len(loaded_images("#gallery-a img")) >= 8 and len(loaded_images("#gallery-b img")) >= 8)
    assert "bbb_02" in browser.find_element(By.ID, "table-a").text
    assert "stage-1 rank" in browser.find_element(By.ID, "table-b").text
    loaded_images("#gallery-a img")[0].click()  # a whole-clip moment plays from the start
    wait.until(lambda _: [v for v in css("#player video") if ".mp4#t=0.000" in (v.get_attribute("src") or "")])
    browser.save_screenshot(str(ARTIFACTS / "text_to_video.png"))

    # video to text: upload a generated clip
    open_tab("Video to text")
    clip = write_video(tmp_path / "browser_upload.mp4", num_frames=40, seed=7)
    wait.until(lambda _: css("#v2t-video input[type=file]"))[0].send_keys(str(clip))
    wait.until(lambda _: css("#v2t-video video"))
    browser.find_element(By.ID, "v2t-btn").click()
    wait.until(lambda _: "ranked for browser_upload.mp4" in browser.find_element(By.ID, "v2t-summary").text)
    captions = browser.find_element(By.ID, "v2t-captions").text
    assert "caption" in captions and len(captions.splitlines()) > 10
    browser.save_screenshot(str(ARTIFACTS / "video_to_text.png"))

    # explain (eercf: frame attention, patch map, score terms) and the DSL heat maps
    open_tab("Explain")
    query = css("#explain-query textarea")[0]
    query.clear()
    query.send_keys(BIRD)
    next(label for label in css("#explain-method label") if label.text.strip() == "eercf").click()
    browser.find_element(By.ID, "explain-btn").click()
    wait.until(lambda _: loaded_images("#frame-attention img") and loaded_images("#patch-map img")
               and loaded_images("#terms img"))
    assert int(loaded_images("#frame-attention img")[0].get_attribute("naturalWidth")) > 600
    browser.save_screenshot(str(ARTIFACTS / "explain.png"))
    browser.find_element(By.ID, "dsl-btn").click()
    wait.until(lambda _: loaded_images("#dsl-before img") and loaded_images("#dsl-after img"))
    assert "rank before" in browser.find_element(By.ID, "dsl-changes").text
    page.shot("dsl", scroll_to="dsl-before")
    browser.find_element(By.ID, "dsl-before").screenshot(str(ARTIFACTS / "dsl_before.png"))

    # s3ma shows its concepts; the collection and results tabs show what is indexed and measured
    next(label for label in css("#explain-method label") if label.text.strip() == "s3ma").click()
    browser.find_element(By.ID, "explain-btn").click()
    wait.until(lambda _: loaded_images("#concept-map img") and "shared" in browser.find_element(By.ID, "concepts").text)
    page.shot("concepts", scroll_to="concepts")
    open_tab("Collection")
    wait.until(lambda _: "clips" in browser.find_element(By.ID, "collection-info").text)
    # the page shows the collection as it is now (the endpoint test may have added clips)
    from gradio_client import Client

    now = Client(app_url, verbose=False).predict(api_name="/collection").split("**")[1]
    assert now in browser.find_element(By.ID, "collection-info").text
    browser.save_screenshot(str(ARTIFACTS / "collection.png"))
    open_tab("Results")
    wait.until(lambda _: "test300" in browser.find_element(By.ID, "results-table").text)
    browser.save_screenshot(str(ARTIFACTS / "results.png"))
    for name in ("text_to_video", "video_to_text", "explain", "dsl", "concepts", "collection", "results"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 20_000
