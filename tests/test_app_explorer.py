"""The explorer services (vtr_core.explorer) and their panels, in process, on the demo collection."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO, write_video
from vtr_core.errors import (
    IndexFormatError,
    IndexMismatchError,
    QueryError,
    VideoError,
    VtrError,
)
from vtr_core.explorer import explain_panels, panels, plots
from vtr_core.explorer.results import results_table
from vtr_core.explorer.service import Explorer
from vtr_core.resources import demo_index_dir

DEMO_INDEX = demo_index_dir()
from vtr_core.index import CATALOGUE, VideoIndex
from vtr_core.indexing.indexer import index_folder
from vtr_core.methods import METHODS
from vtr_core.methods.explanation import AlignmentsPanel, ConceptsPanel, GatesPanel, PatchesPanel
from vtr_core.retrieval.dsl import dsl_revise
from vtr_core.storage import file_sha256

BIRD = "a purple bird gets knocked off a branch by a falling nut"  # a caption of bbb_02


@pytest.fixture(scope="module")
def explorer(lite_backbone, tmp_path_factory):
    return Explorer(DEMO_INDEX, device="cpu", workdir=tmp_path_factory.mktemp("workdir"))


@pytest.mark.parametrize("method", list(METHODS))
def test_a_caption_finds_its_clip(explorer, method):
    result = explorer.queries.text_to_video(BIRD, method, top_k=8)
    ids = [h.video_id for h in result.hits]
    assert [h.rank for h in result.hits] == list(range(1, 9)) and "bbb_02" in ids[:5]
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    assert all(h.thumbnail.width > 0 and h.thumbnail.height > 0 for h in result.hits)
    assert result.timings.encode_ms > 0 and result.timings.total_ms >= result.timings.encode_ms
    if result.rerank_depth:  # stage-1 ranks are a different order, shown beside the final rank
        assert all(h.reranked for h in result.hits) and len({h.coarse_rank for h in result.hits}) == 8
        assert "stage 1: #" in panels.gallery_items(result)[0][1] and "re-rank of the top" in panels.timings_text(result)
    else:
        assert [h.coarse_rank for h in result.hits] == list(range(1, 9))
    # the explanation of a hit adds up to the score the search gave it
    hit = result.hits[ids.index("bbb_02")]
    view = explorer.queries.explain(BIRD, "bbb_02", method)
    assert view.explanation.score == pytest.approx(hit.score, abs=1e-4)


def test_bad_queries_are_one_line_errors(explorer):
    for query in ("", "   ", "x" * 5000):
        with pytest.raises(QueryError) as error:
            explorer.queries.text_to_video(query, "meanp")
        assert "\n" not in str(error.value)
    with pytest.raises(VtrError, match="unknown method"):
        explorer.queries.text_to_video("a bird", "nope")
    with pytest.raises(VtrError, match="no clip 'nope'"):
        explorer.queries.explain("a bird", "nope", "meanp")


def test_video_to_text_for_an_uploaded_clip_and_corpora(explorer, tmp_path):
    clip = write_video(tmp_path / "upload.mp4", num_frames=40, seed=5)
    result = explorer.queries.video_to_text(str(clip), "camoe", top_k=5)
    assert result.video == "upload.mp4" and result.corpus_size == 116 and len(result.hits) == 5
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    collection = {json.loads(line)["video_id"] for line in (REPO / "assets" / "captions.jsonl").read_text().splitlines()}
    assert all(h.video_id in collection for h in result.hits) and len(result.frames) == 12

    txt = tmp_path / "mine.txt"
    txt.write_text("a purple bird on a branch\n\na car on a road\na bowl of soup\n")
    own = explorer.queries.video_to_text("bbb_02", "meanp", corpus=txt, top_k=10)
    assert own.hits[0].caption == "a purple bird on a branch" and len(own.hits) == 3
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text('{"text": "a purple bird on a branch"}\n{"caption": "a car on a road"}\n')
    assert explorer.queries.video_to_text("bbb_02", "eercf", corpus=jsonl).hits[0].caption == "a purple bird on a branch"

    bad = {"a.csv": "x,y\n", "b.jsonl": '{"text": "fine"}\nnot json\n', "c.txt": "\n\n", "d.jsonl": '{"other": 1}\n'}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(VtrError) as error:
            explorer.queries.video_to_text("bbb_02", "meanp", corpus=tmp_path / name)
        assert name in str(error.value) and "\n" not in str(error.value)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[:2000])
    for path in (not_video, truncated):
        with pytest.raises(VideoError):
            explorer.queries.video_to_text(str(path), "meanp")


def test_explain_panels_follow_the_data(explorer):
    kinds = {}
    for method in METHODS:
        view = explorer.queries.explain(BIRD, "bbb_02", method)
        e = view.explanation
        kinds[method] = {panel.kind for panel in e.panels}
        frames = explain_panels.frames_panel(view)
        assert len(frames.attention) == 12 and len(view.frames) == 12 and len(view.frame_times_s) == 12
        assert sum(frames.attention) == pytest.approx(1.0, abs=1e-5)
        assert sum(e.weights[n] * e.terms[n] for n in e.weights) == pytest.approx(e.score, abs=1e-5)
        shown = explain_panels.render_explanation(view, frame=3)
        assert set(shown) == {"frames", "terms"} | kinds[method]  # a slot for each kind given, no more
        assert shown["frames"].image.width > 600 and shown["frames"].image.height > 100
        patches = e.panel(PatchesPanel)
        assert shown["patches"].image.width >= 512 and np.asarray(patches.weights).shape == (12, 49)
        assert np.allclose(np.asarray(patches.weights).sum(1), 1.0, atol=1e-4)
        assert shown["terms"].image.width > 0
        assert explain_panels.term_rows(view)[-1][-1] == pytest.approx(e.score, abs=1e-4)
        if concepts := e.panel(ConceptsPanel):  # sparse concepts: each shown with its words
            assert concepts.query and all(c["words"] for c in concepts.query)
            assert "shared" in shown["concepts"].text and shown["concepts"].image.height > 100
        if gates := e.panel(GatesPanel):  # stream gates sum to one; each labelled with what it adds
            assert sum(gates.gates.values()) == pytest.approx(1.0, abs=1e-5) and shown["gates"].image.width > 0
            assert sum(gates.contributions.values()) == pytest.approx(
                sum(e.weights[n] * e.terms[n] for n in gates.gates), abs=1e-5)
        if alignments := e.panel(AlignmentsPanel):
            assert "| word |" in shown["alignments"].text and len(alignments.rows) >= 1
    assert kinds == {"meanp": {"frames", "patches"}, "s3ma": {"frames", "patches", "concepts"},
                     "eercf": {"frames", "patches"}, "camoe": {"frames", "patches", "gates", "alignments"}}
    assert explorer.queries.explain(BIRD, "bbb_02", "eercf").explanation.panel(PatchesPanel).source == "head"
    assert explorer.queries.explain(BIRD, "bbb_02", "meanp").explanation.panel(PatchesPanel).source == "backbone"


def test_dsl_matrix_before_and_after(explorer):
    view = explorer.queries.dsl_matrix("camoe", count=6)
    assert view.before.shape == view.after.shape == (6, 6) and view.truth == list(range(6))
    head, _ = explorer.queries.head("camoe")
    expected = dsl_revise(float(head.scale.detach()) * torch.from_numpy(view.before), 1.0).numpy()
    assert np.allclose(view.after, expected, atol=1e-5)
    for q, change in enumerate(view.changes):
        assert change.clip == view.video_ids[q]
        assert change.rank_before == 1 + int((view.before[q] > view.before[q, q]).sum())
        assert change.rank_after == 1 + int((view.after[q] > view.after[q, q]).sum())
    before, after = panels.dsl_heat_maps(view)
    assert before.size == after.size and before.width > 300
    assert len(panels.change_rows(view)) == 6 and "transductive" in view.note

    typed = explorer.queries.dsl_matrix("meanp", ["a purple bird", "a big white rabbit", "a flying squirrel"])
    assert typed.truth is None and typed.before.shape[0] == 3 and 3 <= typed.before.shape[1] <= 9
    with pytest.raises(QueryError, match="2 to 24 queries"):
        explorer.queries.dsl_matrix("meanp", ["only one query"])


def test_writes_go_to_a_user_copy_of_the_bundled_index(lite_backbone, tmp_path):
    before = file_sha256(DEMO_INDEX / CATALOGUE)
    explorer = Explorer(DEMO_INDEX, device="cpu", workdir=tmp_path / "work", video_roots=[tmp_path])
    assert explorer.collection.read_only and len(explorer.collection.index) == 39
    clip = write_video(tmp_path / "my clip.mp4", num_frames=30, seed=9)
    video_id, report = explorer.collection.add_clip(clip, "my clip.mp4")
    info = explorer.collection.info()
    assert video_id == "my_clip" and report.added == ["my_clip"] and info.videos == 40
    assert info.index_dir.startswith(str(tmp_path / "work")) and file_sha256(DEMO_INDEX / CATALOGUE) == before
    assert list((tmp_path / "work").glob("*/uploads/my_clip.mp4"))
    index = explorer.collection.index
    assert all(Path(index.video_path(r)).is_file() for r in range(len(index)))
    assert video_id in [h.video_id for h in explorer.queries.text_to_video("a coloured screen", "eercf", top_k=40).hits]
    assert explorer.collection.add_clip(clip, "my clip.mp4")[0] == "my_clip" and len(explorer.collection.index) == 40  # same file again

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError):
        explorer.collection.add_clip(broken)
    with pytest.raises(VideoError, match="not a video file"):
        explorer.collection.add_clip(tmp_path / "my clip.mp4", "notes.txt")
    with pytest.raises(VtrError, match="no such folder"):
        explorer.collection.index_folder(tmp_path / "missing")
    assert len(explorer.collection.index) == 40
    # a later session opens the user copy
    assert len(Explorer(DEMO_INDEX, device="cpu", workdir=tmp_path / "work").collection.index) == 40


def test_a_writable_index_is_updated_in_place(lite_backbone, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        write_video(videos / f"v{i}.mp4", num_frames=20, seed=i)
    index_folder(videos, tmp_path / "idx", lite_backbone, num_frames=4)
    explorer = Explorer(tmp_path / "idx", device="cpu", workdir=tmp_path / "work", video_roots=[tmp_path / "more"])
    assert not explorer.collection.read_only and len(explorer.collection.index) == 2
    more = tmp_path / "more"
    more.mkdir()
    write_video(more / "v9.mp4", num_frames=20, seed=9)
    seen = []
    report = explorer.collection.index_folder(more, progress=lambda done, total, item: seen.append((done, total)))
    assert report.added == ["v9"] and seen[-1] == (1, 1) and len(explorer.collection.index) == 3
    assert explorer.collection.info().index_dir == str((tmp_path / "idx").resolve())
    assert explorer.collection.add_clip(write_video(tmp_path / "up.mp4", seed=4))[0] == "up"
    assert (tmp_path / "idx-uploads" / "up.mp4").is_file() and len(explorer.collection.index) == 4
    with pytest.raises(VtrError, match="no captions file"):
        explorer.queries.video_to_text("v0", "meanp")


def test_open_errors(lite_backbone, tmp_path):
    with pytest.raises(IndexFormatError, match="not a video index"):
        Explorer(tmp_path, device="cpu")
    with pytest.raises(IndexFormatError, match="no such directory"):
        Explorer(tmp_path / "missing", device="cpu")
    shipped = re.escape(VideoIndex.open(DEMO_INDEX).header.backbone_spec)  # the offline default, lite0:msrvtt
    with pytest.raises(IndexMismatchError, match=rf"built with backbone {shipped} \(384-d\), not clip:ViT-B-32/openai"):
        Explorer(DEMO_INDEX, device="cpu", backbone="clip:ViT-B-32/openai")


def test_results_table_and_plots():
    columns, rows = results_table()
    assert columns[:4] == ["split", "method", "head", "DSL"] and all(len(r) == len(columns) for r in rows)
    assert {r[0] for r in rows} >= {"test300"} and {r[3] for r in rows} == {"no", "yes"}
    assert plots.colormap(np.array([0.0, 1.0])).tolist() == [[68, 1, 84], [253, 231, 37]]
    image = plots.heat_map(np.arange(6).reshape(2, 3), ["a", "b"], ["x", "y", "z"], title="t",
                           marks=np.eye(2, 3, dtype=bool))
    assert image.width > 3 * 34 and image.height > 2 * 34


def test_folders_and_uploads_are_confined(lite_backbone, tmp_path):
    explorer = Explorer(DEMO_INDEX, device="cpu", workdir=tmp_path / "work", video_roots=[tmp_path / "allowed"],
                        max_upload_bytes=8_000)
    # by default only the folders holding the clips (and the uploads folder); the given root is added
    assert explorer.collection.video_roots == sorted([str(REPO / "assets" / "videos"), str(explorer.collection.uploads_dir),
                                           str((tmp_path / "allowed").resolve())])
    (tmp_path / "allowed" / "sub").mkdir(parents=True)
    assert explorer.collection.allowed_folder(tmp_path / "allowed" / "sub" / ".." / "sub") == (tmp_path / "allowed" / "sub").resolve()
    for outside in (tmp_path, tmp_path / "allowed" / ".." / "work", "/"):
        with pytest.raises(VtrError, match="outside the folders this app may index"):
            explorer.collection.index_folder(outside)
    (tmp_path / "allowed" / "out").symlink_to(tmp_path / "work", target_is_directory=True)
    with pytest.raises(VtrError, match="outside the folders"):
        explorer.collection.allowed_folder(tmp_path / "allowed" / "out")
    with pytest.raises(VtrError, match="no such folder"):
        explorer.collection.index_folder(tmp_path / "allowed" / "missing")

    small = write_video(tmp_path / "small.mp4", num_frames=10, size=(64, 48), seed=1)
    large = write_video(tmp_path / "large.mp4", num_frames=60, size=(320, 240), seed=2)
    assert small.stat().st_size <= 8_000 < large.stat().st_size
    assert explorer.collection.check_upload(small) == small
    for call in (lambda: explorer.collection.add_clip(large), lambda: explorer.queries.video_to_text(str(large), "meanp")):
        with pytest.raises(VideoError, match=r"large.mp4: [0-9.]+ MB is over the upload limit of 0.00763 MB"):
            call()
    assert len(explorer.collection.index) == 39
