"""kill -9, again and again: the index and the training checkpoints stay whole, and runs resume.

Every run is its own process, killed with SIGKILL mid-work. To afford 20 kills on a 2-core CI
machine, runs are forked from a "zygote" process that has already imported torch, built the
backbone and warmed up torch's lazy set-up (10 s or more from cold), so a run starts in
milliseconds; each forked run still takes its own writer lock, file handles and decode threads,
and dies as a killed indexer or trainer does. The indexer's last run is a fresh `python -m vtr_core
index` process.

Where a run dies is chosen two ways. Exact points: the child reports named places in the real code
(decode, encode, each step of a commit: segment arrays written, strips written, segment published,
catalogue transaction applied but not committed, committed, sweep; for training: an optimizer step,
best.pt / last.pt temp written but not renamed, published) and waits at the chosen one to be
killed. Random points: a seeded random delay after the child starts, reports a progress step or
ends an epoch. Saves still go through the real `storage.atomic_write` (temp, fsync, rename); the
hooks only report from inside its write step.
"""
from __future__ import annotations

import fcntl
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tests.conftest import REPO, write_video
from vtr_core.index import CATALOGUE, VideoIndex
from vtr_core.index.catalogue import Catalogue

NUM_VIDEOS = 24
FRAMES = 2
KILLS = 20
TRAIN_KILLS = 10
EPOCHS = 40
WAIT_S = 120  # longest silence from a child before the test gives up

# Shared by both zygotes: events out as JSON lines, named points, fork-per-job serving.
ZYGOTE_COMMON = r'''
import json, os, sys, threading, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from vtr_core import storage

_lock = threading.Lock()
_counts = {}
_stop = None


def emit(**event):
    event["pid"] = os.getpid()
    with _lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def point(label):
    """A named place in the real code: report it, and wait here to be killed when told to."""
    with _lock:
        n = _counts[label] = _counts.get(label, 0) + 1
    emit(at=label, n=n)
    if _stop == [label, n]:
        emit(stopped=label, n=n)
        time.sleep(600)


def around(owner, name, label):
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        point(label + ":before")
        out = original(*args, **kwargs)
        point(label + ":after")
        return out

    setattr(owner, name, wrapped)


def temp_written(label, dump):
    """atomic_write's write step, then a point: the temporary file is written, not yet renamed."""
    def write(handle):
        dump(handle)
        handle.flush()
        point(label)
    return write


def serve(run):
    global _stop
    emit(ready=True)
    for line in sys.stdin:
        job = json.loads(line)
        child = os.fork()
        if child == 0:
            code = 0
            try:
                _stop = job.get("stop")
                emit(started=True)
                emit(result=run(job))
            except BaseException as exc:
                emit(error=f"{type(exc).__name__}: {exc}")
                code = 1
            finally:
                os._exit(code)
        emit(forked=child)
        _, status = os.waitpid(child, 0)
        emit(exited=child, signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
             code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None)
'''

INDEX_ZYGOTE = ZYGOTE_COMMON + r'''
import numpy as np
from vtr_core.indexing import workers as decoding
from vtr_core.index import catalogue as vcatalogue, segments as vsegments, writer as vwriter
from vtr_core.backbones import create_backbone
from vtr_core.indexing.indexer import index_folder

backbone = create_backbone("lite", "cpu")


def run(job):
    around(decoding, "read_moments", "decode")
    around(backbone, "encode_frames", "encode")
    around(vsegments, "_save", "segment_array")
    around(vsegments, "write_synced", "strip")
    around(vcatalogue.Catalogue, "commit", "catalogue")
    around(vwriter.IndexWriter, "sweep", "sweep")
    fsync_dir = vsegments.fsync_dir

    def fsync_dir_noted(path):
        fsync_dir(path)
        if Path(path).name == "segments":  # right after the segment's rename
            point("segment_published")

    apply = vcatalogue.Catalogue._apply

    def apply_noted(db, batch):  # inside the transaction: every row written, COMMIT not yet run
        apply(db, batch)
        point("catalogue_applied")

    vsegments.fsync_dir, vcatalogue.Catalogue._apply = fsync_dir_noted, staticmethod(apply_noted)
    commit = vwriter.IndexWriter.commit

    def commit_noted(self):
        out = commit(self)
        emit(committed=[v.video_id for v in self.index.videos], generation=self.index.generation)
        return out

    vwriter.IndexWriter.commit = commit_noted
    report = index_folder(job["folder"], job["index"], backbone, num_frames=job["frames"],
                          commit_every=job["commit_every"], commit_interval_s=0,
                          batch_frames=job["frames"] * job["batch_videos"], decode_workers=2,
                          progress=lambda done, total, name: emit(progress=done, total=total))
    return {"added": report.added, "updated": report.updated, "unchanged": report.unchanged,
            "failed": report.failed, "seconds": report.seconds}


# torch's and faiss's lazy first-use set-up, here once rather than in every child
backbone.encode_frames(np.zeros((1, 64, 96, 3), np.uint8), patch_dtype=torch.float16)
import faiss
faiss.IndexFlatIP(backbone.embed_dim).add(np.zeros((1, backbone.embed_dim), np.float32))
serve(run)
'''

TRAIN_ZYGOTE = ZYGOTE_COMMON + r'''
from vtr_core.methods import checkpoints
from vtr_core.training import loop
from vtr_core.backbones.base import TextFeatures
from vtr_core.methods import make_config, method_class
from vtr_core.training import TrainConfig, TrainData, train_head

V, T, D, C = 48, 4, 32, 96  # a tiny synthetic task: captions near their video's mean frame
g = torch.Generator().manual_seed(0)
frames = torch.nn.functional.normalize(torch.randn(V, T, D, generator=g), dim=-1)
caption_video = torch.arange(C) % V
sentence = torch.nn.functional.normalize(frames.mean(1)[caption_video] + 0.3 * torch.randn(C, D, generator=g), dim=-1)
captions = TextFeatures(sentence, torch.randn(C, 5, D, generator=g), torch.ones(C, 5, dtype=torch.bool), [],
                        [f"caption {i}" for i in range(C)])
data = TrainData(frames, None, captions, caption_video)


def run(job):
    def save_last_noted(obj, path):
        storage.atomic_write(path, temp_written("last_temp", lambda h: torch.save(obj, h)))
        point("last_published")

    def save_best_noted(obj, path):
        storage.atomic_write(path, temp_written("best_temp", lambda h: torch.save(obj, h)))
        point("best_published")

    loop.atomic_torch_save, checkpoints.atomic_torch_save = save_last_noted, save_best_noted
    head = method_class("eercf")(D, make_config("eercf", T, temporal_layers=1), raw_dim=0)
    config = TrainConfig(epochs=job["epochs"], batch_size=16, lr=3e-3, seed=0)
    result = train_head(head, data, config, job["out"], "synthetic", T, resume=job["resume"],
                        log=lambda message: emit(log=message), progress=lambda step, total: point("step"))
    return {"epochs": [r["epoch"] for r in result.history], "best_epoch": result.best_epoch,
            "seconds": result.seconds}


def warm_up():
    """One short run here, so that torch's lazy first-use set-up (seconds) is not paid per child."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        head = method_class("eercf")(D, make_config("eercf", T, temporal_layers=1), raw_dim=0)
        train_head(head, data, TrainConfig(epochs=1, batch_size=16), scratch, "synthetic", T, log=lambda m: None)


warm_up()
serve(run)
'''


class Zygote:
    """A long-lived process that forks one child per job; the test kills the children."""

    def __init__(self, script: str):
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.child: int | None = None
        self.next(lambda e: e.get("ready"), timeout=300)

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"noise": line})
        self.events.put({"eof": True})

    def next(self, until=lambda e: True, timeout: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no expected word from the zygote in {timeout:.0f} s") from None
            assert not event.get("eof"), f"the zygote died (exit status {self.process.wait(timeout=30)})"
            if until(event):
                return event

    def start(self, job: dict) -> tuple[int, list[dict]]:
        """Fork a child for `job`: its pid, and whatever it wrote before the zygote named it."""
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        early = []
        while "forked" not in (event := self.next()):
            early.append(event)
        self.child = event["forked"]
        return self.child, early

    def run(self, job: dict, kill_when=None, delay_s: float = 0.0) -> tuple[list[dict], dict]:
        """Run one job; SIGKILL its process `delay_s` after the first event `kill_when` accepts.

        Returns the child's events (all it wrote before it died) and the zygote's word on its end.
        """
        child, early = self.start(job)
        events, deadline, killed = [], None, False
        while True:
            if early:
                event = early.pop(0)
            else:
                timeout = WAIT_S if deadline is None or killed else max(0.0, deadline - time.monotonic())
                try:
                    event = self.events.get(timeout=timeout)
                except queue.Empty:
                    assert deadline is not None and not killed, f"child {child} fell silent for {WAIT_S} s"
                    os.kill(child, signal.SIGKILL)
                    killed = True
                    continue
            assert not event.get("eof"), "the zygote died"
            if event.get("exited") == child:
                self.child = None
                return events, event
            events.append(event)
            if deadline is None and kill_when is not None and kill_when(event):
                deadline = time.monotonic() + delay_s
            if deadline is not None and not killed and time.monotonic() >= deadline:
                os.kill(child, signal.SIGKILL)
                killed = True

    def close(self) -> None:
        if self.child is not None:
            try:
                os.kill(self.child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.stdin.close()
        self.process.kill()
        self.process.wait(timeout=30)


def on_nth(k: int, matches: Callable[[dict], bool]) -> Callable[[dict], bool]:
    """A kill trigger that fires at the k-th event `matches` accepts."""
    seen = [0]

    def trigger(event: dict) -> bool:
        seen[0] += bool(matches(event))
        return seen[0] == k

    return trigger


def errors_of(events: list[dict]) -> list[str]:
    return [e["error"] for e in events if "error" in e]


# ------------------------------------------------------------------------------------ the index
def strays(directory: Path) -> dict[str, list[str]]:
    """Files no catalogue row refers to, by kind (segments of the previous generation are rows still)."""
    known = Catalogue(directory).known_segments() if VideoIndex.exists(directory) else set()
    found: dict[str, list[str]] = {"segments": [], "root": []}
    if (directory / "segments").is_dir():
        found["segments"] = sorted(p.name for p in (directory / "segments").iterdir() if p.name not in known)
    if directory.is_dir():
        expected = {CATALOGUE, f"{CATALOGUE}-wal", f"{CATALOGUE}-shm", ".lock", "segments", "heads"}
        found["root"] = sorted(p.name for p in directory.iterdir() if p.name not in expected)
    return found


def lock_is_free(directory: Path) -> bool:
    """The kernel drops a killed writer's flock: the lock file stays, the lock does not."""
    if not (directory / ".lock").exists():
        return True
    with open(directory / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def check_index(directory: Path, reference: VideoIndex) -> list[str]:
    """Open the index and check every part of it; returns the video ids it holds."""
    index = VideoIndex.open(directory)
    ids = [v.video_id for v in index.videos]
    n, T, D = len(ids), FRAMES, reference.header.embed_dim
    assert len(set(ids)) == n
    frames, coarse = index.frame_features(), index.coarse_vectors()
    assert frames.shape == (n, T, D) and coarse.shape == (n, D)
    assert index.patch_tokens().shape == (n, T, reference.header.num_patches, D)
    assert index.raw_features().shape == (n, T, reference.header.raw_dim)
    if n:
        scores, rows = index.search_coarse(coarse, n)
        assert sorted(set(rows.ravel().tolist())) == list(range(n))  # only (and all) listed rows
        assert np.allclose(scores[:, 0], (coarse * coarse).sum(1), atol=1e-4)  # each finds itself first
    for row in range(n):
        assert index.frame_strip_jpeg(row)[:2] == b"\xff\xd8"
    # the same features a never-killed run computes (float16 storage, batches of other sizes)
    ref_rows = [reference.row_of(i) for i in ids]
    assert np.allclose(frames, reference.frame_features(ref_rows), atol=2e-3)
    assert np.allclose(coarse, reference.coarse_vectors(ref_rows), atol=2e-3)
    return ids


# Exact kill points, each a place in the real code (see INDEX_ZYGOTE); n picks the commit or batch.
INDEX_POINTS = ["decode:before", "encode:before", "encode:after", "segment_array:after", "strip:after",
                "segment_published", "catalogue:before", "catalogue_applied", "catalogue:after", "sweep:before"]
BEFORE_PUBLISH = INDEX_POINTS[:-2]  # a run stopped at the first of these commits nothing


def test_indexer_killed_20_times_keeps_every_commit_and_resumes(tmp_path):
    started = time.perf_counter()
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(NUM_VIDEOS):
        write_video(folder / f"v{i:02d}.mp4", num_frames=12, size=(96, 64), seed=i)
    everything = {f"v{i:02d}" for i in range(NUM_VIDEOS)}
    zygote = Zygote(INDEX_ZYGOTE)
    ready = time.perf_counter()
    try:
        kills, committed, log = kill_indexer_repeatedly(zygote, folder, tmp_path)
    finally:
        zygote.close()
    looped = time.perf_counter()
    reference = VideoIndex.open(tmp_path / "clean")
    directory = tmp_path / "idx"
    assert kills == KILLS and 0 < len(committed) < NUM_VIDEOS

    # a fresh process, the real CLI, uninterrupted: only the rest is indexed
    report_file = tmp_path / "report.json"
    finish = subprocess.run([sys.executable, "-m", "vtr_core", "index", str(folder), "--index", str(directory),
                             "--device", "cpu", "--quiet", "--workers", "2", "--report", str(report_file)],
                            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert finish.returncode == 0, finish.stderr[-2000:]
    report = json.loads(report_file.read_text())
    assert report["unchanged"] == len(committed) and not report["updated"] and not report["failed"]
    assert sorted(report["added"]) == sorted(everything - committed)
    assert set(check_index(directory, reference)) == everything
    left = strays(directory)
    assert not left["segments"] and not left["root"], left
    print("\n".join(log) + f"\nfinal run (CLI) added {len(report['added'])}, unchanged {report['unchanged']}; "
          f"zygote start {ready - started:.1f} s, clean run + {kills} killed runs {looped - ready:.1f} s, "
          f"final run {time.perf_counter() - looped:.1f} s")


def kill_indexer_repeatedly(zygote: Zygote, folder: Path, tmp_path: Path) -> tuple[int, set[str], list[str]]:
    """Index `folder` into tmp_path/idx, killing every run; checks the index after each kill.

    Builds the never-killed reference in tmp_path/clean first. Returns the number of kills, the
    videos committed at the end, and one line per kill.
    """
    base = {"folder": str(folder), "frames": FRAMES, "stop": None}
    events, end = zygote.run(base | {"index": str(tmp_path / "clean"), "commit_every": 64, "batch_videos": 8})
    assert end["code"] == 0 and not errors_of(events), errors_of(events)
    reference = VideoIndex.open(tmp_path / "clean")
    assert len(reference) == NUM_VIDEOS

    directory = tmp_path / "idx"
    rng = random.Random(7)
    plan = [("point", p) for p in INDEX_POINTS] + [("random", None)] * (KILLS - 1 - len(INDEX_POINTS))
    rng.shuffle(plan)
    plan.insert(0, ("point", "catalogue_applied"))  # the first run dies in its first transaction
    committed: set[str] = set()
    kills, log = 0, []
    for kind, label in plan:
        remaining = NUM_VIDEOS - len(committed)
        # leave work for every later run and for the final one: near the end, no random kills
        # (a long delay may commit several videos) and only first-commit points
        if kind == "random" and remaining < 12:
            kind, label = "point", rng.choice(BEFORE_PUBLISH)
        small = remaining < 8
        job = base | {"index": str(directory), "commit_every": 1 if small else rng.choice([1, 1, 2]),
                      "batch_videos": rng.choice([1, 2])}
        if kind == "point":
            nth = 1 if small else rng.randint(1, 6) if label.startswith("decode") else rng.choice([1, 2])
            if label == "sweep:before":
                nth += 1  # sweep 1 runs when the writer opens, sweep k+1 after commit k
            job["stop"] = [label, nth]
            events, end = zygote.run(job, kill_when=lambda e: "stopped" in e)
            assert any("stopped" in e for e in events), f"never reached {label} #{nth}"
            where = f"{label} #{nth}"
        else:
            after = rng.choice(["started", "progress"])
            k, delay = rng.choice([1, 2]), rng.uniform(0.0, 0.15)
            trigger = on_nth(1, lambda e: "started" in e) if after == "started" else on_nth(k, lambda e: "progress" in e)
            events, end = zygote.run(job, kill_when=trigger, delay_s=delay)
            where = f"{delay * 1000:.0f} ms after " + ("start" if after == "started" else f"progress {k}")
        assert not errors_of(events), errors_of(events)
        assert end["signal"] == signal.SIGKILL, f"the run ended by itself ({end}), not by the kill"
        kills += 1
        # where the main thread was (decode events come from the decode threads, which run ahead)
        last_at = next((f"{e['at']} #{e['n']}" for e in reversed(events) if "at" in e and "decode" not in e["at"]),
                       "-")
        totals = [e["total"] for e in events if "total" in e]
        assert all(t == remaining for t in totals), "a restart redid finished work"
        reported = max((set(e["committed"]) for e in events if "committed" in e), key=len, default=set())

        assert lock_is_free(directory)
        if VideoIndex.exists(directory):
            now = set(check_index(directory, reference))
        else:  # killed while creating the index: nothing was committed, nothing to open yet
            assert not committed and not reported
            now = set()
        assert now >= committed | reported, "a committed video was lost"
        left = strays(directory)
        assert len(left["segments"]) <= 2 and len(left["root"]) <= 1, left  # a commit's or a merge's segment
        log.append(f"kill {kills:2d} at {where:34s} died at {last_at:24s} committed {len(committed):2d} -> "
                   f"{len(now):2d}, strays {sum(map(len, left.values()))}")
        committed = now
    return kills, committed, log


# --------------------------------------------------------------------------------- training
def checkpoint_temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".*.tmp")) if directory.is_dir() else []


def read_last(directory: Path) -> dict | None:
    """last.pt as a resuming run reads it (plain tensors only), checked for its own consistency."""
    if not (directory / "last.pt").is_file():
        return None
    state = torch.load(directory / "last.pt", map_location="cpu", weights_only=True)
    epoch = state["epoch"]
    assert [record["epoch"] for record in state["history"]] == list(range(epoch + 1))
    assert state["steps"] == 3 * (epoch + 1)  # 48 videos in batches of 16
    return state


def test_training_killed_10_times_resumes_from_its_last_epoch(tmp_path):
    started = time.perf_counter()
    zygote = Zygote(TRAIN_ZYGOTE)
    ready = time.perf_counter()
    try:
        events, end = zygote.run({"out": str(tmp_path / "straight"), "resume": False, "epochs": EPOCHS})
        assert end["code"] == 0 and not errors_of(events), errors_of(events)
        straight = next(e["result"] for e in events if "result" in e)
        assert straight["epochs"] == list(range(EPOCHS))
        epoch_s = straight["seconds"] / EPOCHS

        out = tmp_path / "run"
        rng = random.Random(11)
        # best.pt is written only when an epoch improves: its points go first, where epoch 0 always does
        plan = [("best_temp", 1), ("best_published", 1)]
        rest = [("last_temp", None), ("last_temp", None), ("last_published", None), ("step", None),
                ("step", None)] + [("random", None)] * (TRAIN_KILLS - 7)
        rng.shuffle(rest)
        plan += rest
        saved, log = -1, []  # the epoch last.pt holds (-1: none yet)
        for kill, (label, nth) in enumerate(plan, 1):
            job = {"out": str(out), "resume": True, "epochs": EPOCHS}
            if label == "random" and saved > EPOCHS - 15:  # a long delay may run several epochs: keep some
                label = "step"
            if label == "random":
                k, delay = rng.choice([1, 2]), rng.uniform(0, 1.5 * epoch_s)
                trigger = on_nth(k, lambda e: str(e.get("log", "")).startswith("epoch "))
                events, end = zygote.run(job, kill_when=trigger, delay_s=delay)
                where = f"{delay * 1000:.0f} ms after epoch end {k}"
            else:
                nth = nth or (rng.randint(2, 9) if label == "step" else rng.randint(1, 3))
                job["stop"] = [label, nth]
                events, end = zygote.run(job, kill_when=lambda e: "stopped" in e)
                assert any("stopped" in e for e in events), f"never reached {label} #{nth}"
                where = f"{label} #{nth}"
            assert not errors_of(events), errors_of(events)
            assert end["signal"] == signal.SIGKILL, f"the run ended by itself ({end}), not by the kill"
            logs = [e["log"] for e in events if "log" in e]
            if saved >= 0:  # it resumed where the last run's last.pt left off
                assert logs and logs[0].startswith("resumed from") and logs[0].endswith(f"at epoch {saved + 1}")
            finished = [int(m.split()[1].rstrip(":")) for m in logs if m.startswith("epoch ")]
            assert finished == list(range(saved + 1, saved + 1 + len(finished)))  # each epoch once, in order

            state = read_last(out)
            now = state["epoch"] if state else -1
            # nothing finished is lost; at most the epoch in progress (saved, not yet logged) is extra
            assert max([saved, *finished]) <= now <= max([saved, *finished]) + 1
            if (out / "best.pt").is_file():
                best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
                assert best["training"]["epoch"] <= now + 1
            temps = checkpoint_temps(out)
            assert len(temps) <= 1, temps  # the one a killed save left; the next run removes it
            died = next((f"{e['at']} #{e['n']}" for e in reversed(events) if "at" in e), "-")
            log.append(f"kill {kill:2d} at {where:28s} died at {died:20s} last.pt epoch {saved:2d} -> {now:2d}, "
                       f"temps {len(temps)}")
            saved = now
        assert len(log) == TRAIN_KILLS and 0 <= saved < EPOCHS - 1

        events, end = zygote.run({"out": str(out), "resume": True, "epochs": EPOCHS})
        assert end["code"] == 0 and not errors_of(events), errors_of(events)
        result = next(e["result"] for e in events if "result" in e)
        assert result["epochs"] == list(range(EPOCHS)) and result["best_epoch"] == straight["best_epoch"]
        assert read_last(out)["epoch"] == EPOCHS - 1 and not checkpoint_temps(out)
        # killed ten times, it ends exactly where the straight run does
        for name in ("last.pt", "best.pt"):
            mine = torch.load(out / name, map_location="cpu", weights_only=True)
            theirs = torch.load(tmp_path / "straight" / name, map_location="cpu", weights_only=True)
            weights = ("head", "state_dict")[name == "best.pt"]
            for key, value in theirs[weights].items():
                assert torch.allclose(mine[weights][key], value, atol=1e-6), f"{name}: {key}"
    finally:
        zygote.close()
    print("\n".join(log) + f"\nfinal run: epochs {saved + 1}..{EPOCHS - 1}; zygote start {ready - started:.1f} s, "
          f"{EPOCHS} epochs {straight['seconds']:.2f} s, straight + killed + final runs {time.perf_counter() - ready:.1f} s")
