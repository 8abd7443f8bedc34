"""The running app under hostile or heavy use: confinement, uploads, odd queries, load while indexing.

One app process (started without --host, so with the defaults a user gets) serves every test here:
the folders it may index are confined to one root, and uploads to 1 MB. The load test writes its
latencies to tests/artifacts/load.json (quoted in docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.app_server import running_app
from tests.conftest import REPO, write_video

BIRD = "a purple bird gets knocked off a branch by a falling nut"  # a caption of bbb_02
LOAD_SEARCHES = 50
LOAD_VIDEOS = 24


@pytest.fixture(scope="module")
def app(tmp_path_factory, lite_backbone):
    """(url, allowed root, process) of an app with default host and a 1 MB upload limit."""
    work = tmp_path_factory.mktemp("reliable-app")
    root = tmp_path_factory.mktemp("allowed-videos")
    with running_app(work, "--video-root", str(root), "--max-upload-mb", "1") as (url, process):
        yield url, root, process


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app[0], verbose=False)


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_binds_to_this_machine_only_by_default(app):
    url = app[0]
    assert listening_addresses(int(url.rstrip("/").rsplit(":", 1)[1])) == {"127.0.0.1"}


def test_folders_are_confined_to_the_allowed_roots(app, client, tmp_path):
    from gradio_client.exceptions import AppError

    _, root, _ = app
    outside = tmp_path / "outside"
    outside.mkdir()
    write_video(outside / "secret.mp4", num_frames=8, seed=1)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    traversal = f"{root}/{os.path.relpath(outside, root)}"  # root/../..: resolves outside the root
    for folder in (outside, traversal, root / "escape", "/etc", "/"):
        with pytest.raises(AppError, match="outside the folders this app may index") as error:
            client.predict(str(folder), api_name="/index_folder")
        assert "\n" not in str(error.value) and "Traceback" not in str(error.value)
    # a file inside the root that links outside it is refused, the rest of the folder is indexed
    inside = root / "mixed"
    inside.mkdir()
    write_video(inside / "fine.mp4", num_frames=8, seed=2)
    (inside / "link.mp4").symlink_to(outside / "secret.mp4")
    clips_before = clip_count(client)
    status, _ = client.predict(str(inside), api_name="/index_folder")
    assert "indexed 1 new" in status and "1 failed" in status and "link.mp4" in status and "outside" in status
    assert clip_count(client) == clips_before + 1


def test_files_outside_the_collection_are_not_served(app):
    url = app[0]
    for path in ("/etc/passwd", str(REPO / "app.py"), str(REPO / "precomputed" / "demo_index" / "catalogue.sqlite")):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert error.value.code in (403, 404)


def test_uploads_are_limited_in_size_and_type(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    clips_before = clip_count(client)
    big = write_video(tmp_path / "big.mp4", num_frames=60, size=(640, 480), seed=3)
    noise = np.random.default_rng(0).integers(0, 256, 2 << 20, dtype=np.uint8).tobytes()
    big.write_bytes(big.read_bytes() + noise)  # well over the 1 MB limit
    with pytest.raises(Exception, match="(?i)size|large|limit"):
        client.predict(handle_file(str(big)), api_name="/add_clip")
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video at all\n" * 10)
    with pytest.raises(AppError, match="notes.mp4: not a readable video"):
        client.predict(handle_file(str(fake)), api_name="/add_clip")
    with pytest.raises(AppError, match="notes.mp4: not a readable video"):
        client.predict(handle_file(str(fake)), None, "meanp", None, 5, api_name="/captions")
    assert clip_count(client) == clips_before


@pytest.mark.parametrize("query", [
    "",
    "   \t\n ",
    "\x00\x07\x1b\x7f\u200b",
])
def test_queries_with_nothing_to_search_are_one_line_messages(client, query):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty query") as error:
        client.predict(query, "meanp", "none", 5, api_name="/search")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("query,method", [
    ("一只紫色的鸟被坚果从树枝上撞下来", "eercf"),
    ("птица на ветке", "s3ma"),
    ("🐦🌰🌳", "camoe"),
    ("a purple\x00 bird\x1b on a \u200bbranch\r\n", "meanp"),
    (BIRD * 9, "eercf"),  # long but under the limit: the text encoder truncates to its context
])
def test_odd_queries_get_results(client, query, method):
    _, hits, *_ = client.predict(query, method, "none", 5, api_name="/search")
    rows = hits["data"] if isinstance(hits, dict) else hits
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    scores = [float(row[4]) for row in rows]
    assert scores == sorted(scores, reverse=True) and all(np.isfinite(scores))


def test_a_huge_query_is_a_one_line_message(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="query too long \\(10000 characters\\)") as error:
        client.predict("x" * 10_000, "meanp", "none", 5, api_name="/search")
    assert "\n" not in str(error.value)


def clip_count(client) -> int:
    return int(re.search(r"\*\*(\d+) clips\*\*", client.predict(api_name="/collection")).group(1))


def ids_of(hits) -> list[str]:
    return [row[1] for row in (hits["data"] if isinstance(hits, dict) else hits)]


def burst(clients: list, queries: list[tuple[str, str]], still_indexing=lambda: False) -> list[tuple]:
    """One search per client, all at once: (latency s, query, ids, answered while indexing)."""

    def one_search(number: int) -> tuple[float, tuple[str, str], list[str], bool]:
        query = queries[number % len(queries)]
        started = time.perf_counter()
        hits = clients[number].predict(query[0], query[1], "none", 8, api_name="/search")[1]
        return time.perf_counter() - started, query, ids_of(hits), still_indexing()

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(one_search, range(len(clients))))


def latency_figures(answers: list[tuple]) -> dict:
    latencies = np.array([a[0] for a in answers]) * 1e3
    return {"p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1), "max_ms": round(float(latencies.max()), 1)}


def test_fifty_concurrent_searches_while_indexing(app, client):
    """Every search answers, and answers as it would alone, while a folder is being indexed."""
    from gradio_client import Client
    from gradio_client.utils import Status

    url, root, _ = app
    queries = [(BIRD, "eercf"), ("a rabbit holding a red apple", "meanp"), ("a squirrel in a tree", "s3ma"),
               ("a city at night", "camoe"), ("a person walking", "eercf")]
    alone, one_at_a_time = {}, []
    for q in queries * 2:  # the first round loads each method's head and searcher
        started = time.perf_counter()
        alone[q] = ids_of(client.predict(q[0], q[1], "none", 8, api_name="/search")[1])
        one_at_a_time.append((time.perf_counter() - started, q, alone[q], False))
    with ThreadPoolExecutor(max_workers=8) as pool:  # connected before the clock starts
        clients = list(pool.map(lambda _: Client(url, verbose=False), range(LOAD_SEARCHES)))
    quiet = burst(clients, queries)  # the same burst with nothing else running, for comparison
    clips_before = clip_count(client)
    folder = root / "load"
    folder.mkdir()
    for i in range(LOAD_VIDEOS):
        write_video(folder / f"load{i:02d}.mp4", num_frames=24, seed=100 + i)
    indexing = Client(url, verbose=False).submit(str(folder), api_name="/index_folder")
    deadline = time.monotonic() + 60
    while indexing.status().code not in (Status.PROCESSING, Status.PROGRESS) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not indexing.done(), "indexing finished before the searches started: give it more videos"
    busy = burst(clients, queries, lambda: not indexing.done())
    status, _ = indexing.result(timeout=600)
    assert f"indexed {LOAD_VIDEOS} new" in status and "0 failed" in status

    new_ids = {f"load{i:02d}" for i in range(LOAD_VIDEOS)}
    for _, query, ids, _ in quiet + busy:  # clips added meanwhile may enter the list; the old ones keep their order
        old = [i for i in ids if i not in new_ids]
        assert old == alone[query][:len(old)], (query, ids, alone[query])
        assert len(ids) == 8
    overlapped = sum(a[3] for a in busy)
    figures = {"searches": LOAD_SEARCHES, "concurrent_clients": LOAD_SEARCHES, "errors": 0,
               "videos_indexed_meanwhile": LOAD_VIDEOS, "answered_while_indexing": overlapped,
               "one_at_a_time": latency_figures(one_at_a_time[len(queries):]),
               "without_indexing": latency_figures(quiet), "while_indexing": latency_figures(busy)}
    (REPO / "tests" / "artifacts").mkdir(exist_ok=True)
    (REPO / "tests" / "artifacts" / "load.json").write_text(json.dumps(figures, indent=1))
    print("load:", figures)
    assert overlapped >= 1, "no search ran while the folder was being indexed"
    assert clip_count(client) == clips_before + LOAD_VIDEOS
