"""Search with every head over a real on-disk index, and the eval/train commands end to end."""

import json

import pytest
import torch

from tests.conftest import write_video
from tests.test_cli import run
from vtr_core.index import VideoIndex
from vtr_core.indexing.indexer import index_folder
from vtr_core.methods import METHODS, create_head
from vtr_core.retrieval.search import Searcher

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (20, 40, 220), "yellow": (230, 220, 30),
           "white": (240, 240, 240), "black": (10, 10, 10)}


@pytest.fixture(scope="module")
def colour_collection(tmp_path_factory, lite_backbone):
    root = tmp_path_factory.mktemp("colours")
    videos = root / "videos"
    videos.mkdir()
    with open(root / "captions.jsonl", "w") as handle:
        for name, colour in COLOURS.items():
            write_video(videos / f"{name}.mp4", num_frames=16, colour=colour)
            handle.write(json.dumps({"video_id": name, "captions": [f"a {name} screen", f"something {name}"]}) + "\n")
    index_folder(videos, root / "idx", lite_backbone, num_frames=4)
    return root


@pytest.mark.parametrize("name", list(METHODS))
def test_searcher_two_stage_over_the_index(colour_collection, lite_backbone, name):
    index = VideoIndex.open(colour_collection / "idx", backbone_id=lite_backbone.id)
    head = create_head(name, lite_backbone, num_frames=4, corpus=[f"a {c} screen" for c in COLOURS])
    searcher = Searcher(index, lite_backbone, head)
    hits = searcher.search(["a red screen", "a blue screen"], top_k=6, rerank_top_k=3 if name != "meanp" else 0)
    for query_hits in hits:
        assert [h.rank for h in query_hits] == list(range(1, 7))
        assert sorted(h.video_id for h in query_hits) == sorted(COLOURS)
        reranked = [h for h in query_hits if h.reranked]
        if name == "meanp":
            assert not reranked and [h.coarse_rank for h in query_hits] == list(range(1, 7))
        else:
            # the three stage-1 candidates come first, ordered by the fine score
            assert [h.rank for h in reranked] == [1, 2, 3] and {h.coarse_rank for h in reranked} == {1, 2, 3}
            assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)
    # the fine scores are the head's full similarity with patch tokens
    first = hits[0][0]
    row = index.row_of(first.video_id)
    frames = torch.from_numpy(index.frame_features([row]))
    patches = torch.from_numpy(index.patch_tokens([row]))
    expected = head.similarity(head.text_state(lite_backbone.encode_text(["a red screen"])), head.video_state(frames, patches))
    assert first.score == pytest.approx(expected.item(), abs=1e-5)
    assert searcher.timings.encode > 0 and searcher.timings.coarse >= 0


def test_search_cli_with_a_method(colour_collection):
    result = run("search", "--index", colour_collection / "idx", "a yellow screen", "--method", "eercf",
                 "--zero-shot", "--top-k", "3", "--json")
    line = json.loads(result.stdout)
    assert [h["rank"] for h in line["results"]] == [1, 2, 3]
    assert {"video_id", "path", "score", "coarse_rank", "reranked"} <= set(line["results"][0])


def test_eval_and_train_commands_on_a_captioned_folder(colour_collection, tmp_path):
    out = tmp_path / "eval.json"
    run("eval", "--method", "meanp", "--backbone", "lite", "--data-dir", colour_collection, "--split", "all",
        "--zero-shot", "--cache", tmp_path / "cache", "--dsl", "--json", out)
    record = json.loads(out.read_text())
    assert record["method"] == "meanp" and record["dsl"] is True and record["split"] == "all"
    assert record["reviser"] == "dsl" and record["transductive"] is True
    for direction in ("t2v", "v2t"):
        assert set(record[direction]) >= {"R@1", "R@5", "R@10", "MdR", "MnR"}
        assert 0 <= record[direction]["R@1"] <= 100 and record[direction]["count"] == 6

    inverted = tmp_path / "inverted.json"
    run("eval", "--method", "meanp", "--backbone", "lite", "--data-dir", colour_collection, "--split", "all",
        "--zero-shot", "--cache", tmp_path / "cache", "--dsl", "--reviser", "inverted", "--json", inverted)
    assert json.loads(inverted.read_text())["reviser"] == "inverted"

    run("train", "--method", "meanp", "--backbone", "lite", "--data-dir", colour_collection, "--split", "all",
        "--epochs", "3", "--batch-size", "6", "--cache", tmp_path / "cache", "--output", tmp_path / "run",
        "--set", "init_logit_scale=3.0")
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["config"]["init_logit_scale"] == 3.0
    bad = run("train", "--method", "meanp", "--backbone", "lite", "--data-dir", colour_collection, "--split", "all",
              "--cache", tmp_path / "cache", "--output", tmp_path / "bad", "--set", "num_concepts=8", check=False)
    assert bad.returncode == 2 and "method meanp has no setting num_concepts" in bad.stderr
    assert (tmp_path / "run" / "best.pt").is_file() and len(json.loads((tmp_path / "run" / "history.json").read_text())) == 3
    run("eval", "--method", "meanp", "--backbone", "lite", "--data-dir", colour_collection, "--split", "all",
        "--checkpoint", tmp_path / "run" / "best.pt", "--cache", tmp_path / "cache", "--json", out)
    assert json.loads(out.read_text())["head"] == str(tmp_path / "run" / "best.pt")
    wrong = run("eval", "--method", "eercf", "--backbone", "lite", "--data-dir", colour_collection, "--split", "all",
                "--checkpoint", tmp_path / "run" / "best.pt", "--cache", tmp_path / "cache", check=False)
    assert wrong.returncode == 2 and "is for method meanp, not eercf" in wrong.stderr
