"""Mismatched parts are refused with one line naming both sides; untrusted pickles are never run.

Real files throughout: indexes built with the lite backbone (or the writer with random features
where the backbone does not matter), heads saved with `save_head`, resume files written by
`train_head`, a real open_clip checkpoint of a tiny architecture.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO, TINY_CLIP, save_tiny_clip, write_video
from vtr_core.backbones import create_backbone
from vtr_core.cli import main
from vtr_core.errors import (
    BackboneError,
    IndexFormatError,
    IndexMismatchError,
    VtrError,
)
from vtr_core.index import CATALOGUE, IndexHeader, VideoFeatures, VideoIndex, VideoRecord
from vtr_core.indexing.indexer import index_folder
from vtr_core.methods import CheckpointError, create_head, load_head, save_head
from vtr_core.methods.eercf import EERCF, EERCFConfig
from vtr_core.methods.meanp import MeanPooling
from vtr_core.retrieval.search import Searcher
from vtr_core.storage import atomic_torch_save
from vtr_core.training import TrainConfig, TrainData, train_head
from vtr_core.training.features import caption_features, features_dir

FRAMES = 2  # frames per video in the lite index


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message, message
    return message


class RunsCode:
    """Unpickling this calls os.mkdir(marker): the marker appears if a loader runs pickled code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def malicious(path: Path, marker: Path, wrap=lambda payload: payload) -> Path:
    """Save a file whose pickle runs code, and prove the payload is live (a full unpickle runs it)."""
    torch.save(wrap(RunsCode(marker)), path)
    torch.load(path, weights_only=False)
    assert marker.is_dir()
    marker.rmdir()
    return path


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lite_index(tmp_path_factory, lite_backbone) -> Path:
    """Two real clips indexed with the lite backbone, FRAMES frames each, no patch tokens."""
    root = tmp_path_factory.mktemp("mismatch")
    videos = root / "videos"
    videos.mkdir()
    write_video(videos / "red.mp4", num_frames=12, colour=(220, 20, 20))
    write_video(videos / "blue.mp4", num_frames=12, colour=(20, 40, 220))
    report = index_folder(videos, root / "idx", lite_backbone, num_frames=FRAMES, store_patches=False)
    assert len(report.added) == 2 and not report.failed
    return root / "idx"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A real open_clip backbone (32-d) from a checkpoint file saved here."""
    _, checkpoint = save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), "tiny-clip-test")
    return create_backbone(f"clip:tiny-clip-test/{checkpoint}", "cpu")


def random_header(**changes) -> IndexHeader:
    fields = {"backbone_spec": "test", "backbone_id": "test-v1", "embed_dim": 8, "num_frames": 3,
              "patch_grid": [2, 2], "store_patches": True, "raw_dim": 0}
    fields.update(changes)
    return IndexHeader(**fields)


def random_video(header: IndexHeader, video_id: str = "a") -> VideoFeatures:
    rng = np.random.default_rng(0)
    T, D = header.num_frames, header.embed_dim
    record = VideoRecord(video_id=video_id, path=f"{video_id}.mp4", size=1, mtime_ns=1, sha256="0" * 64,
                         duration_s=1.0, fps=10.0, num_source_frames=10, width=32, height=24)
    return VideoFeatures.whole(record=record, frame_times_s=[0.1 * t for t in range(T)], coarse=rng.standard_normal(D).astype(np.float32),
                         frames=rng.standard_normal((T, D)).astype(np.float32),
                         patches=rng.standard_normal((T, header.num_patches, D)).astype(np.float32)
                         if header.store_patches else None,
                         strip_jpeg=b"x", raw=rng.standard_normal((T, header.raw_dim)).astype(np.float32)
                         if header.raw_dim else None)


def build_random_index(directory: Path, **changes) -> VideoIndex:
    header = random_header(**changes)
    with VideoIndex.writer(directory, header) as writer:
        writer.add(random_video(header))
        return writer.commit()


# ---------------------------------------------------------------------------------- indexes
def test_opening_with_another_backbone_names_both_backbones_and_dimensions(tmp_path):
    build_random_index(tmp_path / "idx")
    with pytest.raises(IndexMismatchError) as exc:
        VideoIndex.open(tmp_path / "idx", backbone_id="clip:ViT-B-32/openai", embed_dim=512)
    assert "test-v1 (8-d)" in one_line(exc) and "clip:ViT-B-32/openai (512-d)" in one_line(exc)
    with pytest.raises(IndexMismatchError) as exc:  # same name, other width: still refused
        VideoIndex.open(tmp_path / "idx", backbone_id="test-v1", embed_dim=16)
    assert "test-v1 (8-d)" in one_line(exc) and "test-v1 (16-d)" in one_line(exc)
    assert len(VideoIndex.open(tmp_path / "idx", backbone_id="test-v1", embed_dim=8)) == 1


@pytest.mark.parametrize("change, mine, theirs", [
    ({"backbone_id": "other-v2", "embed_dim": 16}, "test-v1 (8-d)", "other-v2 (16-d)"),
    ({"embed_dim": 16}, "embed_dim=8", "embed_dim=16"),
    ({"store_patches": False}, "store_patches=True", "store_patches=False"),
    ({"patch_grid": [3, 3]}, "num_patches=4", "num_patches=9"),
    ({"raw_dim": 5}, "raw_dim=0", "raw_dim=5"),
])
def test_writer_with_another_header_names_both_sides_and_leaves_the_index(tmp_path, change, mine, theirs):
    before = build_random_index(tmp_path / "idx")
    catalogue = (tmp_path / "idx" / CATALOGUE).read_bytes()
    with pytest.raises(IndexMismatchError) as exc, VideoIndex.writer(tmp_path / "idx", random_header(**change)):
        pass
    assert mine in one_line(exc) and theirs in one_line(exc)
    assert (tmp_path / "idx" / CATALOGUE).read_bytes() == catalogue
    after = VideoIndex.open(tmp_path / "idx")
    np.testing.assert_array_equal(after.frame_features(), before.frame_features())


def edit_meta(directory: Path, key: str, edit) -> None:
    """Rewrite one value of an index's catalogue meta table, as another program might have."""
    with sqlite3.connect(directory / CATALOGUE) as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (edit(value), key))
    db.close()


def edit_header(directory: Path, **fields) -> None:
    edit_meta(directory, "header", lambda value: json.dumps(json.loads(value) | fields))


@pytest.mark.parametrize("version, advice", [(3, "upgrade"), (0, "re-index")])
def test_other_format_versions_name_both_versions(tmp_path, version, advice):
    build_random_index(tmp_path / "idx")
    edit_meta(tmp_path / "idx", "version", lambda _: str(version))
    with pytest.raises(IndexMismatchError) as exc:
        VideoIndex.open(tmp_path / "idx")
    assert f"format version {version}, this program reads version 2 (" in one_line(exc) and advice in one_line(exc)


def test_catalogue_from_another_program_is_one_line(tmp_path):
    build_random_index(tmp_path / "idx")
    edit_header(tmp_path / "idx", colour_space="ycbcr")  # a field this program does not know
    with pytest.raises(IndexFormatError) as exc:
        VideoIndex.open(tmp_path / "idx")
    assert "damaged or from another program" in one_line(exc) and "colour_space" in one_line(exc)


def test_indexing_into_an_index_of_another_backbone_or_frame_count(lite_index, lite_backbone, tiny_clip):
    videos = lite_index.parent / "videos"
    generation = VideoIndex.open(lite_index).generation
    with pytest.raises(IndexMismatchError) as exc:
        index_folder(videos, lite_index, tiny_clip, num_frames=FRAMES, store_patches=False)
    assert f"{lite_backbone.id} (384-d)" in one_line(exc) and f"{tiny_clip.id} (32-d)" in one_line(exc)
    with pytest.raises(IndexMismatchError) as exc:
        index_folder(videos, lite_index, lite_backbone, num_frames=FRAMES + 3, store_patches=False)
    assert f"num_frames={FRAMES}" in one_line(exc) and f"num_frames={FRAMES + 3}" in one_line(exc)
    assert VideoIndex.open(lite_index).generation == generation


# ---------------------------------------------------------------------------------- searching
def test_search_refuses_another_backbone_or_head(lite_index, lite_backbone, tiny_clip):
    index = VideoIndex.open(lite_index)
    with pytest.raises(IndexMismatchError) as exc:
        Searcher(index, tiny_clip)
    assert f"{lite_backbone.id} (384-d)" in one_line(exc) and f"{tiny_clip.id} (32-d)" in one_line(exc)
    with pytest.raises(IndexMismatchError) as exc:
        Searcher(index, lite_backbone, MeanPooling(32))
    assert "meanp head is for 32-d features" in one_line(exc) and "has 384-d" in one_line(exc)
    with pytest.raises(IndexMismatchError) as exc:
        Searcher(index, lite_backbone, EERCF(384, EERCFConfig(num_frames=5, temporal_layers=1), raw_dim=1280))
    assert "built for 5 frames per video" in one_line(exc) and f"has {FRAMES}" in one_line(exc)
    with pytest.raises(IndexMismatchError) as exc:
        Searcher(index, lite_backbone, MeanPooling(384, raw_dim=7))
    assert "7-d raw features" in one_line(exc) and "stores 1280" in one_line(exc)
    # the matching head searches
    head = EERCF(384, EERCFConfig(num_frames=FRAMES, temporal_layers=1), raw_dim=1280)
    hits = Searcher(index, lite_backbone, head).search(["a red screen"], top_k=2)[0]
    assert sorted(h.video_id for h in hits) == ["blue", "red"]


# ---------------------------------------------------------------------------------- head checkpoints
def test_checkpoint_mismatches_name_both_sides(tmp_path, lite_backbone, tiny_clip):
    eercf = create_head("eercf", lite_backbone, num_frames=3, temporal_layers=1)
    save_head(eercf, tmp_path / "eercf.pt", lite_backbone.id, num_frames=3)
    with pytest.raises(CheckpointError) as exc:
        load_head(tmp_path / "eercf.pt", lite_backbone, method="camoe")
    assert "is for method eercf, not camoe (an eercf head for 384-d features)" in one_line(exc)

    # trained on another backbone, of another width
    save_head(MeanPooling(32), tmp_path / "clip.pt", tiny_clip.id, num_frames=3)
    with pytest.raises(CheckpointError) as exc:
        load_head(tmp_path / "clip.pt", lite_backbone, method="meanp")
    assert f"{tiny_clip.id} (32-d)" in one_line(exc) and f"{lite_backbone.id} (384-d)" in one_line(exc)

    # the backbone's name, but another width or other raw features
    save_head(MeanPooling(32), tmp_path / "narrow.pt", lite_backbone.id, num_frames=3)
    with pytest.raises(CheckpointError) as exc:
        load_head(tmp_path / "narrow.pt", lite_backbone)
    assert "a meanp head for 32-d features" in one_line(exc) and "gives 384-d" in one_line(exc)
    save_head(MeanPooling(384), tmp_path / "noraw.pt", lite_backbone.id, num_frames=3)
    with pytest.raises(CheckpointError) as exc:
        load_head(tmp_path / "noraw.pt", lite_backbone)
    assert "for 0-d raw features" in one_line(exc) and "gives 1280-d" in one_line(exc)


def edited_checkpoint(source: Path, target: Path, edit) -> Path:
    """A checkpoint saved by save_head, then changed the way another program version would."""
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    atomic_torch_save(checkpoint, target)
    return target


def test_checkpoints_that_do_not_fit_the_head_are_one_line(tmp_path, lite_backbone):
    head = create_head("eercf", lite_backbone, num_frames=3, temporal_layers=1)
    save_head(head, tmp_path / "eercf.pt", lite_backbone.id, num_frames=3)

    def shape(c):
        c["state_dict"]["adapter.visual.linear.weight"] = torch.zeros(10, 10)

    def layers(c):
        c["config"]["temporal_layers"] = 0  # the file has a layer the head built from its config lacks

    def setting(c):
        c["config"]["no_such_setting"] = 1

    def incomplete(c):
        del c["state_dict"]

    def unknown(c):
        c["method"] = "xclip"

    cases = {shape: "adapter.visual.linear.weight is [10, 10] in the file, [384, 384] in the head",
             layers: "the file has temporal.encoder.layers.0", setting: "its eercf settings do not fit",
             incomplete: "incomplete head checkpoint (no state_dict)", unknown: "method 'xclip', which this version"}
    for edit, message in cases.items():
        path = edited_checkpoint(tmp_path / "eercf.pt", tmp_path / f"{edit.__name__}.pt", edit)
        with pytest.raises(CheckpointError) as exc:
            load_head(path, lite_backbone)
        assert message in one_line(exc), edit.__name__


def test_s3ma_concepts_of_another_width_do_not_fit(tmp_path, lite_backbone):
    head = create_head("s3ma", lite_backbone, num_frames=3, corpus=["a man drives a red car"], temporal_layers=1)
    save_head(head, tmp_path / "s3ma.pt", lite_backbone.id, num_frames=3)
    concepts = head.concepts.shape[0]

    def narrow(c):
        c["state_dict"]["concepts"] = torch.zeros(concepts, 32)

    path = edited_checkpoint(tmp_path / "s3ma.pt", tmp_path / "narrow.pt", narrow)
    with pytest.raises(CheckpointError) as exc:
        load_head(path, lite_backbone)
    assert f"concepts is [{concepts}, 32] in the file, [{concepts}, 384] in the head" in one_line(exc)


# ---------------------------------------------------------------------------------- resuming training
def tiny_training(backbone, head, output: Path, resume: bool = False):
    frames = torch.randn(4, 3, backbone.embed_dim)
    captions = backbone.encode_text(["a red car", "a blue sea", "a green field", "a white wall"])
    data = TrainData(frames, None, captions, torch.arange(4))
    return train_head(head, data, TrainConfig(epochs=1, batch_size=4, seed=0), output, backbone.id, 3,
                      resume=resume, log=lambda m: None)


def test_resume_from_another_method_or_width(tmp_path, lite_backbone, tiny_clip):
    tiny_training(lite_backbone, create_head("meanp", lite_backbone, num_frames=3), tmp_path / "meanp")
    with pytest.raises(VtrError) as exc:
        tiny_training(lite_backbone, create_head("eercf", lite_backbone, num_frames=3, temporal_layers=1),
                      tmp_path / "meanp", resume=True)
    assert "holds a meanp run, not eercf" in one_line(exc)
    tiny_training(tiny_clip, MeanPooling(32), tmp_path / "narrow")
    with pytest.raises(VtrError) as exc:
        tiny_training(lite_backbone, create_head("meanp", lite_backbone, num_frames=3), tmp_path / "narrow",
                      resume=True)
    assert "does not fit a meanp head for 384-d features" in one_line(exc)
    assert "[32, 32] in the file, [384, 384] in the head" in one_line(exc)


# ---------------------------------------------------------------------------------- untrusted pickles
def test_head_checkpoint_with_code_is_refused_unrun(tmp_path, lite_backbone):
    marker = tmp_path / "ran"
    path = malicious(tmp_path / "evil.pt", marker, lambda p: {"format": "vtr-head", "version": 1, "config": p})
    with pytest.raises(CheckpointError) as exc:
        load_head(path, lite_backbone)
    assert "not a loadable head checkpoint" in one_line(exc) and "posix.mkdir" in one_line(exc)
    assert not marker.exists()


def test_resume_file_with_code_is_refused_unrun(tmp_path, lite_backbone):
    marker = tmp_path / "ran"
    (tmp_path / "run").mkdir()
    malicious(tmp_path / "run" / "last.pt", marker, lambda p: {"method": "meanp", "head": p})
    with pytest.raises(VtrError) as exc:
        tiny_training(lite_backbone, create_head("meanp", lite_backbone, num_frames=3), tmp_path / "run", resume=True)
    assert "resume file" in one_line(exc) and "refused" in one_line(exc)
    assert not marker.exists()


def test_caption_cache_with_code_is_recomputed_unrun(tmp_path, lite_backbone):
    texts = ["a red car", "a dog on a beach"]
    fresh = caption_features(texts, lite_backbone, tmp_path)
    cache = next(features_dir(lite_backbone, tmp_path).glob("captions-*.pt"))
    marker = tmp_path / "ran"
    malicious(cache, marker, lambda p: {"sentence": p})
    again = caption_features(texts, lite_backbone, tmp_path)
    assert not marker.exists()
    torch.testing.assert_close(again.sentence, fresh.sentence)
    assert again.tokens == fresh.tokens
    assert torch.load(cache, weights_only=True)["texts"] == texts  # rewritten as plain data


def test_clip_checkpoint_with_code_is_refused_unrun(tmp_path, tiny_clip):
    marker = tmp_path / "ran"
    path = malicious(tmp_path / "evil.pt", marker, lambda p: {"state_dict": p})
    with pytest.raises(BackboneError) as exc:
        create_backbone(f"clip:tiny-clip-test/{path}", "cpu")
    assert f"clip checkpoint {path}: not a file of plain weights" in one_line(exc) and "posix.mkdir" in one_line(exc)
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    malicious(folder / "open_clip_pytorch_model.bin", marker)
    with pytest.raises(BackboneError) as exc:
        create_backbone(f"clip:local-dir:{folder}", "cpu")
    assert "not a file of plain weights" in one_line(exc)
    assert not marker.exists()


def test_clip_safetensors_checkpoint_loads_the_same_weights(tmp_path, tiny_clip):
    """The pickle-free format: a safetensors file of the same weights gives the same features."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    backbone = create_backbone(f"clip:tiny-clip-test/{tmp_path / 'tiny.safetensors'}", "cpu")
    assert backbone.id != tiny_clip.id and backbone.embed_dim == 32
    torch.testing.assert_close(backbone.encode_text(["a red car"]).sentence, tiny_clip.encode_text(["a red car"]).sentence)


# ---------------------------------------------------------------------------------- the CLI
def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vtr_core", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)


def assert_one_error_line(returncode: int, stderr: str, *parts: str) -> None:
    assert returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr
    for part in parts:
        assert part in last, stderr


def test_cli_search_with_another_backbone_version(lite_index, lite_backbone, tmp_path):
    """An index written by an older lite backbone: same spec, other weights."""
    copy = tmp_path / "old"
    shutil.copytree(lite_index, copy)
    edit_header(copy, backbone_id="lite:efficientnet_lite0+all-MiniLM-L6-v2/conse-v0")
    result = cli("search", "--index", copy, "--device", "cpu", "--method", "meanp", "--zero-shot", "a red car")
    assert_one_error_line(result.returncode, result.stderr, "conse-v0 (384-d)", f"{lite_backbone.id} (384-d)")


def test_cli_search_with_a_checkpoint_of_another_frame_count(lite_index, lite_backbone, tmp_path):
    head = create_head("eercf", lite_backbone, num_frames=FRAMES + 1, temporal_layers=1)
    save_head(head, tmp_path / "eercf.pt", lite_backbone.id, num_frames=FRAMES + 1)
    result = cli("search", "--index", lite_index, "--device", "cpu", "--method", "eercf",
                 "--checkpoint", tmp_path / "eercf.pt", "a red car")
    assert_one_error_line(result.returncode, result.stderr, f"trained with {FRAMES + 1} frames, the index has {FRAMES}")


def test_cli_search_refusals_in_process(lite_index, lite_backbone, tiny_clip, tmp_path, capsys):
    """The same entry point in this process (the lite backbone is already built): exit 2, one line."""
    save_head(create_head("eercf", lite_backbone, num_frames=FRAMES, temporal_layers=1), tmp_path / "eercf.pt",
              lite_backbone.id, num_frames=FRAMES)
    save_head(MeanPooling(32), tmp_path / "clip.pt", tiny_clip.id, num_frames=FRAMES)
    marker = tmp_path / "ran"
    malicious(tmp_path / "evil.pt", marker, lambda p: {"format": "vtr-head", "version": 1, "state_dict": p})
    cases = [
        (["--method", "camoe", "--checkpoint", tmp_path / "eercf.pt"], ["is for method eercf, not camoe"]),
        (["--method", "meanp", "--checkpoint", tmp_path / "clip.pt"], [f"{tiny_clip.id} (32-d)", "(384-d)"]),
        (["--method", "meanp", "--checkpoint", tmp_path / "evil.pt"], ["not a loadable head checkpoint"]),
        (["--backbone", "clip:RN50//weights.pt"], ["built with backbone lite (384-d), not clip:RN50//weights.pt"]),
    ]
    for extra, parts in cases:
        code = main(["search", "--index", str(lite_index), "--device", "cpu", *map(str, extra), "a red car"])
        assert_one_error_line(code, capsys.readouterr().err, *parts)
    assert not marker.exists()
    # and the matching checkpoint searches
    assert main(["search", "--index", str(lite_index), "--device", "cpu", "--method", "eercf",
                 "--checkpoint", str(tmp_path / "eercf.pt"), "--json", "a red car"]) == 0
    hits = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert sorted(h["video_id"] for h in hits) == ["blue", "red"]
