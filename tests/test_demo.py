"""The bundled demo collection and its shipped index are consistent and searchable."""

import json

import numpy as np

from tests.conftest import REPO
from vtr_core.index import VideoIndex
from vtr_core.retrieval.search import search_text
from vtr_core.video import read_video

ASSETS = REPO / "assets"
DEMO_INDEX = REPO / "precomputed" / "demo_index"


def load_captions() -> list[dict]:
    return [json.loads(line) for line in (ASSETS / "captions.jsonl").read_text().splitlines() if line.strip()]


def test_captions_describe_every_clip():
    rows = load_captions()
    assert 30 <= len(rows) <= 60
    for row in rows:
        assert (ASSETS / row["file"]).is_file() and 2 <= len(row["captions"]) <= 3
        assert all(isinstance(c, str) and len(c.split()) >= 3 for c in row["captions"])
        assert 5.0 <= row["end_s"] - row["start_s"] <= 15.5
    assert sum(p.stat().st_size for p in (ASSETS / "videos").iterdir()) < 25e6


def test_demo_clips_decode():
    for row in load_captions()[:5]:
        sampled = read_video(ASSETS / row["file"], 12)
        assert 5.0 <= sampled.duration_s <= 15.5 and sampled.frames.shape[0] == 12


def test_shipped_index_matches_assets(default_backbone):
    index = VideoIndex.open(DEMO_INDEX, backbone_id=default_backbone.id)
    assert index.header.backbone_spec == default_backbone.spec  # the app's default follows the shipped choice
    rows = {row["video_id"]: row for row in load_captions()}
    assert sorted(v.video_id for v in index.videos) == sorted(rows)
    for row_number, moment in enumerate(index.moments):
        assert index.video_path(row_number) == str((ASSETS / rows[moment.video_id]["file"]).resolve())


def test_shipped_index_ranks_captions_above_chance(default_backbone):
    index = VideoIndex.open(DEMO_INDEX, backbone_id=default_backbone.id)
    rows = load_captions()
    queries = [caption for row in rows for caption in row["captions"]]
    truth = [row["video_id"] for row in rows for _ in row["captions"]]
    results = search_text(index, default_backbone, queries, top_k=len(index))
    ranks = np.array([[hit.video_id for hit in hits].index(t) + 1 for t, hits in zip(truth, results)])
    # chance over 39 clips: R@5 = 12.8 %, median rank 20
    assert (ranks <= 5).mean() > 0.2 and np.median(ranks) < 18
