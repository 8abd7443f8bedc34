"""The on-disk index: round trips, incremental updates, removal, crash safety, mismatches."""

import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, write_video
from vtr_core.errors import IndexFormatError, IndexMismatchError
from vtr_core.index import CATALOGUE, IndexHeader, VideoFeatures, VideoIndex, VideoRecord, segments
from vtr_core.index.catalogue import Catalogue
from vtr_core.indexing.indexer import index_folder, remove_videos
from vtr_core.methods import meanp

T, D, P = 3, 8, 4


def header(**changes) -> IndexHeader:
    fields = dict(backbone_spec="test", backbone_id="test-v1", embed_dim=D, num_frames=T,
                  patch_grid=[2, 2], store_patches=True)
    fields.update(changes)
    return IndexHeader(**fields)


def features(video_id: str, seed: int) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    frames = rng.standard_normal((T, D)).astype(np.float32)
    record = VideoRecord(video_id=video_id, path=f"../videos/{video_id}.mp4", size=seed, mtime_ns=seed,
                         sha256=f"{seed:064x}", duration_s=1.0, fps=10.0, num_source_frames=10,
                         width=32, height=24)
    return VideoFeatures.whole(record=record, frame_times_s=[0.0, 0.3, 0.6], coarse=meanp.video_embedding(frames).numpy(), frames=frames,
                         patches=rng.standard_normal((T, P, D)).astype(np.float32), strip_jpeg=b"jpeg" + bytes([seed]))


def add_all(directory, items, **header_changes):
    with VideoIndex.writer(directory, header(**header_changes)) as writer:
        for item in items:
            writer.add(item)
        return writer.commit()


def test_round_trip(tmp_path):
    items = [features(f"v{i}", i) for i in range(5)]
    add_all(tmp_path / "idx", items)
    index = VideoIndex.open(tmp_path / "idx", backbone_id="test-v1")
    assert [v.video_id for v in index.videos] == ["v0", "v1", "v2", "v3", "v4"]
    np.testing.assert_allclose(index.frame_features([2])[0], items[2].moments[0].frames, atol=2e-3)  # stored as float16
    np.testing.assert_allclose(index.patch_tokens([4])[0], items[4].moments[0].patches, atol=2e-3)
    np.testing.assert_allclose(index.coarse_vectors(), np.stack([i.moments[0].coarse for i in items]), atol=1e-6)
    assert index.frame_strip_jpeg(3) == b"jpeg\x03"
    assert index.moments[1].frame_times_s == [0.0, 0.3, 0.6]
    assert (index.moments[1].start_s, index.moments[1].end_s) == (0.0, 1.0)  # one moment: the whole file
    assert index.video_path(0) == os.path.normpath(str((tmp_path / "idx").resolve() / "../videos/v0.mp4"))
    # coarse search is exact inner product
    scores, rows = index.search_coarse(items[3].moments[0].coarse[None], top_k=2)
    assert rows[0, 0] == 3 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    expected = np.stack([i.moments[0].coarse for i in items]) @ items[3].moments[0].coarse
    assert scores[0, 1] == pytest.approx(np.sort(expected)[-2], abs=1e-5)


def test_raw_features_round_trip_and_are_required(tmp_path):
    items = [features(f"v{i}", i) for i in range(3)]
    for i, item in enumerate(items):
        item.moments[0].raw = np.random.default_rng(10 + i).standard_normal((T, 5)).astype(np.float32)
    index = add_all(tmp_path / "idx", items, raw_dim=5)
    np.testing.assert_allclose(index.raw_features([1, 2]), np.stack([items[1].moments[0].raw, items[2].moments[0].raw]), atol=3e-3)
    # compaction after a removal carries raw features along
    with VideoIndex.writer(tmp_path / "idx", header(raw_dim=5)) as writer:
        writer.remove("v0")
        compacted = writer.commit()
    np.testing.assert_allclose(compacted.raw_features([compacted.row_of("v2")])[0], items[2].moments[0].raw, atol=3e-3)
    with pytest.raises(IndexMismatchError, match="raw features"):
        with VideoIndex.writer(tmp_path / "idx", header(raw_dim=5)) as writer:
            writer.add(features("v9", 9))  # no raw features
    with pytest.raises(IndexMismatchError, match="raw_dim"):
        with VideoIndex.writer(tmp_path / "idx", header(raw_dim=0)):
            pass
    assert VideoIndex.open(tmp_path / "idx").header.raw_dim == 5
    add_all(tmp_path / "plain", [features("a", 1)])
    assert VideoIndex.open(tmp_path / "plain").raw_features() is None


def test_additions_extend_and_replacements_rebuild(tmp_path):
    directory = tmp_path / "idx"
    add_all(directory, [features("a", 1), features("b", 2)])
    index = add_all(directory, [features("c", 3)])
    assert [v.video_id for v in index.videos] == ["a", "b", "c"] and index.generation == 2
    index = add_all(directory, [features("a", 9)])  # changed content replaces
    assert sorted(v.video_id for v in index.videos) == ["a", "b", "c"]
    row = index.row_of("a")
    np.testing.assert_allclose(index.frame_features([row])[0], features("a", 9).moments[0].frames, atol=2e-3)
    _, rows = index.search_coarse(features("a", 9).moments[0].coarse[None], 1)
    assert rows[0, 0] == row


def test_removal_and_compaction_free_disk(tmp_path):
    directory = tmp_path / "idx"
    add_all(directory, [features(f"v{i}", i) for i in range(6)])
    with VideoIndex.writer(directory, header()) as writer:
        for i in range(4):
            writer.remove(f"v{i}")
        index = writer.commit()
    assert [v.video_id for v in index.videos] == ["v4", "v5"]
    assert len(index.segment_names) == 1  # the sparse segment was rewritten
    with VideoIndex.writer(directory, header()):  # and is deleted when no reader may need it
        pass
    assert [p.name for p in (directory / "segments").iterdir()] == index.segment_names
    assert len(index.segment(index.moments[0].segment).coarse) == 2
    np.testing.assert_allclose(index.frame_features([1])[0], features("v5", 5).moments[0].frames, atol=2e-3)
    assert index.frame_strip_jpeg(1) == b"jpeg\x05"
    with pytest.raises(KeyError, match="no video 'v0'"):
        index.row_of("v0")


def test_backbone_mismatch_is_an_error(tmp_path):
    add_all(tmp_path / "idx", [features("a", 1)])
    with pytest.raises(IndexMismatchError, match="built with backbone test-v1.*uses other-v2"):
        VideoIndex.open(tmp_path / "idx", backbone_id="other-v2")
    with pytest.raises(IndexMismatchError, match="num_frames=3.*num_frames=12"):
        add_all(tmp_path / "idx", [], num_frames=12)
    with pytest.raises(IndexMismatchError, match="query vectors have 5 dimensions"):
        VideoIndex.open(tmp_path / "idx").search_coarse(np.zeros((1, 5)), 1)


def test_not_an_index(tmp_path):
    with pytest.raises(IndexFormatError, match="no such directory"):
        VideoIndex.open(tmp_path / "absent")
    with pytest.raises(IndexFormatError, match="not a video index"):
        VideoIndex.open(tmp_path)
    (tmp_path / "holiday.mp4").write_bytes(b"x")
    with pytest.raises(IndexFormatError, match="not empty"):
        add_all(tmp_path, [features("a", 1)])
    assert (tmp_path / "holiday.mp4").read_bytes() == b"x"


def test_newer_format_version_is_refused(tmp_path):
    add_all(tmp_path / "idx", [features("a", 1)])
    with sqlite3.connect(tmp_path / "idx" / CATALOGUE) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(IndexMismatchError, match="format version 99.*newer vtr_core"):
        VideoIndex.open(tmp_path / "idx")


def test_second_writer_is_refused(tmp_path):
    directory = tmp_path / "idx"
    add_all(directory, [features("a", 1)])
    with VideoIndex.writer(directory, header()):
        with pytest.raises(IndexFormatError, match="being written by another process"):
            with VideoIndex.writer(directory, header()):
                pass


@pytest.mark.parametrize("fail_on", ["coarse", "patches", "strips", "catalogue"])
def test_crash_mid_commit_keeps_last_good_index(tmp_path, monkeypatch, fail_on):
    """A failure at any write of a commit leaves the previous generation whole and readable."""
    directory = tmp_path / "idx"
    add_all(directory, [features("a", 1), features("b", 2)])
    generation = VideoIndex.open(directory).generation

    if fail_on == "catalogue":  # the transaction fails after its last statement: rolled back
        real_apply = Catalogue._apply

        def failing_apply(db, batch):
            real_apply(db, batch)
            raise OSError("simulated crash")

        monkeypatch.setattr(Catalogue, "_apply", staticmethod(failing_apply))
    else:
        real_save = segments._save

        def crashing_save(folder, name, array):
            if name == fail_on:
                (folder / f"{name}.npy").write_bytes(b"\x00garbage")  # a torn file, as a crash leaves
                raise OSError("simulated crash")
            real_save(folder, name, array)

        monkeypatch.setattr(segments, "_save", crashing_save)
    with pytest.raises(OSError, match="simulated crash"):
        with VideoIndex.writer(directory, header()) as writer:
            writer.add(features("c", 3))
            writer.remove("a")
            writer.commit()
    monkeypatch.undo()

    index = VideoIndex.open(directory)
    assert index.generation == generation
    assert [v.video_id for v in index.videos] == ["a", "b"]
    np.testing.assert_allclose(index.frame_features([1])[0], features("b", 2).moments[0].frames, atol=2e-3)
    assert index.search_coarse(features("a", 1).moments[0].coarse[None], 1)[1][0, 0] == 0
    # the next writer sweeps the debris and commits normally
    index = add_all(directory, [features("c", 3)])
    assert [v.video_id for v in index.videos] == ["a", "b", "c"]
    assert not any(p.name.startswith(".tmp-") for p in (directory / "segments").iterdir())
    assert {p.name for p in (directory / "segments").iterdir()} == set(index.segment_names)


# ------------------------------------------------------------------ the indexing pipeline
def test_index_folder_incremental(tmp_path, video_folder, lite_backbone):
    directory = tmp_path / "idx"
    report = index_folder(video_folder, directory, lite_backbone, num_frames=4)
    assert sorted(report.added) == [f"clip{i}" for i in range(5)] and not report.failed
    index = VideoIndex.open(directory, backbone_id=lite_backbone.id)
    assert len(index) == 5 and index.header.num_patches == 49
    assert index.frame_features().shape == (5, 4, 384) and index.patch_tokens([0]).shape == (1, 4, 49, 384)
    assert index.video("clip1").num_source_frames == 25

    again = index_folder(video_folder, directory, lite_backbone, num_frames=4)
    assert again.added == [] and again.updated == [] and again.unchanged == 5
    assert VideoIndex.open(directory).generation == index.generation  # nothing rewritten

    write_video(video_folder / "clip2.mp4", num_frames=40, seed=42)  # changed content
    (video_folder / "sub").mkdir()
    write_video(video_folder / "sub" / "new.mp4", seed=7)
    os.utime(video_folder / "clip3.mp4", ns=(1, 1))  # touched, same content
    third = index_folder(video_folder, directory, lite_backbone, num_frames=4)
    assert third.added == ["new"] and third.updated == ["clip2"] and third.unchanged == 4
    index = VideoIndex.open(directory)
    assert len(index) == 6 and index.video("clip2").num_source_frames == 40
    assert index.video("clip3").mtime_ns == 1

    remove_videos(directory, ["clip0"])
    assert sorted(v.video_id for v in VideoIndex.open(directory).videos) == ["clip1", "clip2", "clip3", "clip4", "new"]
    # the index mirrors the folder: a removed video whose file is still there comes back,
    # and --prune drops videos whose files are gone
    (video_folder / "clip4.mp4").unlink()
    fourth = index_folder(video_folder, directory, lite_backbone, num_frames=4, prune=True)
    assert fourth.removed == ["clip4"] and fourth.added == ["clip0"]
    assert sorted(v.video_id for v in VideoIndex.open(directory).videos) == ["clip0", "clip1", "clip2", "clip3", "new"]


def test_index_folder_skips_bad_files_and_keeps_good_ones(tmp_path, video_folder, lite_backbone):
    (video_folder / "empty.mp4").write_bytes(b"")
    (video_folder / "notes.mp4").write_text("hello")
    data = (video_folder / "clip0.mp4").read_bytes()
    (video_folder / "cut.mp4").write_bytes(data[: len(data) // 3])
    report = index_folder(video_folder, tmp_path / "idx", lite_backbone, num_frames=2)
    assert len(report.added) == 5
    assert sorted(os.path.basename(p) for p, _ in report.failed) == ["cut.mp4", "empty.mp4", "notes.mp4"]
    assert all("\n" not in reason and os.path.basename(p) in reason for p, reason in report.failed)


def test_same_stem_in_two_folders_gets_distinct_ids(tmp_path, lite_backbone):
    root = tmp_path / "videos"
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
        write_video(root / sub / "clip.mp4", seed=ord(sub))
    report = index_folder(root, tmp_path / "idx", lite_backbone, num_frames=2)
    assert sorted(report.added) == ["b/clip", "clip"]


def test_killed_indexer_leaves_readable_index_and_resumes(tmp_path):
    """kill -9 during a real indexing run: committed videos survive, the rerun finishes the rest."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(12):
        write_video(folder / f"v{i:02d}.mp4", num_frames=12, seed=i)
    directory = tmp_path / "idx"
    script = (
        "import sys; from vtr_core.backbones import create_backbone; from vtr_core.indexing.indexer import index_folder;"
        "b = create_backbone('lite', 'cpu');"
        "index_folder(sys.argv[1], sys.argv[2], b, num_frames=2, commit_every=2, commit_interval_s=0, batch_frames=2,"
        " progress=lambda d, t, n: print(d, flush=True))"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(folder), str(directory)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    for line in process.stdout:  # kill once a few videos are through
        if int(line) >= 7:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    index = VideoIndex.open(directory)
    committed = {v.video_id for v in index.videos}
    assert 2 <= len(committed) < 12
    assert index.frame_features().shape == (len(committed), 2, 384)

    from vtr_core.backbones import create_backbone

    report = index_folder(folder, directory, create_backbone("lite", "cpu"), num_frames=2)
    assert set(report.added) == {f"v{i:02d}" for i in range(12)} - committed
    assert report.unchanged == len(committed)
    assert len(VideoIndex.open(directory)) == 12


def test_auto_structure_follows_the_collection_size():
    """`auto` (the default for new indexes): exact Flat for small collections, HNSW past 20,000
    vectors; a factory string an index recorded (`Flat`) still wins."""
    import faiss

    from vtr_core.index import build_faiss
    from vtr_core.index.structures import FLAT_MAX_COUNT

    def exact(index) -> bool:
        index = faiss.downcast_index(index)
        return isinstance(index, faiss.IndexFlat) and index.metric_type == faiss.METRIC_INNER_PRODUCT

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((FLAT_MAX_COUNT + 5, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert exact(build_faiss(vectors[:100]))
    built = build_faiss(vectors)  # kept: the downcast proxy does not own the C++ index
    large = faiss.downcast_index(built)
    assert isinstance(large, faiss.IndexHNSWFlat) and large.ntotal == len(vectors) and large.hnsw.efSearch == 256
    assert exact(build_faiss(vectors, "Flat")) and exact(build_faiss(vectors[:0]))  # recorded Flat; an empty index
    assert IndexHeader("b", "b-v1", 8, 2, None, False).faiss_factory == "auto"
