"""A small version of the 1k-A protocol on the real MSR-VTT videos (skipped without the data)."""

import csv

import numpy as np

from vtr_core.index import VideoIndex
from vtr_core.indexing.indexer import index_folder
from vtr_core.retrieval.search import search_text

NUM_VIDEOS = 30


def test_lite_zero_shot_text_to_video_beats_chance(tmp_path, msrvtt_dir, lite_backbone):
    captions = {row["video_id"]: row["sentence"] for row in csv.DictReader(open(msrvtt_dir / "MSRVTT_JSFUSION_test.csv"))}
    video_ids = (msrvtt_dir / "split_test300.txt").read_text().split()[:NUM_VIDEOS]
    folder = tmp_path / "videos"
    folder.mkdir()
    for video_id in video_ids:
        (folder / f"{video_id}.mp4").symlink_to(msrvtt_dir / "videos" / f"{video_id}.mp4")
    report = index_folder(folder, tmp_path / "idx", lite_backbone, num_frames=12, store_patches=False)
    assert not report.failed and len(report.added) == NUM_VIDEOS

    index = VideoIndex.open(tmp_path / "idx", backbone_id=lite_backbone.id)
    results = search_text(index, lite_backbone, [captions[v] for v in video_ids], top_k=NUM_VIDEOS)
    ranks = np.array([[hit.video_id for hit in hits].index(v) + 1 for v, hits in zip(video_ids, results)])
    recall_at_1, recall_at_5 = (ranks <= 1).mean(), (ranks <= 5).mean()
    print(f"MSR-VTT {NUM_VIDEOS} videos: R@1 {recall_at_1:.1%} R@5 {recall_at_5:.1%} median rank {np.median(ranks)}")
    # chance: R@1 = 1/30 = 3.3 %, R@5 = 16.7 %, median rank 15.5
    assert recall_at_1 >= 0.15 and recall_at_5 >= 0.4 and np.median(ranks) <= 6
