"""The accuracy study's parts: exact math on small tensors, cross-validation on synthetic data."""

import math

import pytest
import torch
import torch.nn.functional as F

from vtr_core.backbones.base import TextFeatures
from vtr_core.studies import accuracy


def text_features(sentences: torch.Tensor) -> TextFeatures:
    n = sentences.shape[0]
    return TextFeatures(sentences, torch.zeros(n, 1, sentences.shape[1]), torch.zeros(n, 1, dtype=torch.bool),
                        [[] for _ in range(n)], [f"t{i}" for i in range(n)])


def test_class_space_similarity_is_the_bhattacharyya_coefficient():
    classes = torch.eye(3)  # class embeddings: the axes
    sentence = torch.tensor([[1.0, 0.0, 0.0]])
    logits = torch.tensor([[[0.0, 0.0, 0.0], [2.0 * math.log(3.0), 0.0, 0.0]]])  # two frames
    video_t, query_t = accuracy.CLASS_SPACE_TEMPERATURES
    assert video_t == 2.0  # frame 2: softmax([ln 3, 0, 0]) = (3/5, 1/5, 1/5)
    video = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [3 / 5, 1 / 5, 1 / 5]]).mean(0)
    e = math.exp(1 / query_t)
    query = torch.tensor([e, 1.0, 1.0]) / (e + 2)
    expected = (query.sqrt() * video.sqrt()).sum()
    got = accuracy.class_space_similarity(sentence, logits, classes)
    assert got.shape == (1, 1) and got[0, 0].item() == pytest.approx(expected.item(), abs=1e-6)


def test_query_meets_video_mixes_the_sentence_with_its_conse_projection():
    classes = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    sentence = F.normalize(torch.tensor([[3.0, 1.0]]), dim=-1)
    # with two classes, top-10 is both: weights are the softmax of cosines / 0.05
    cos = sentence @ classes.T
    weights = (cos / accuracy.QUERY_TEMPERATURE).softmax(-1)
    projected = F.normalize(weights @ classes, dim=-1)
    expected = F.normalize(accuracy.QUERY_MIX * sentence + (1 - accuracy.QUERY_MIX) * projected, dim=-1)
    assert torch.allclose(accuracy.query_meets_video(sentence, classes), expected, atol=1e-6)


def test_ensemble_standardises_each_head_per_query():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    b = torch.tensor([[30.0, 10.0, 20.0]])  # a larger scale must not dominate
    got = accuracy.ensemble({"a": a, "b": b})
    expected = ((a - 2.0) / 1.0 + (b - 20.0) / 10.0) / 2
    assert torch.allclose(got, expected)


def test_t2v_row_counts_the_diagonal_as_truth():
    similarity = torch.tensor([[0.9, 0.1], [0.8, 0.2]])  # query 0 right, query 1 ranks its video second
    row = accuracy.t2v_row("x", "s", similarity)
    assert row["R@1"] == 50.0 and row["R@5"] == 100.0 and row["Rsum"] == 250.0


def test_cross_validation_learns_from_raw_features(lite_backbone):
    """Raw features carry the signal, ConSE frames do not: the raw projection must find it."""
    torch.manual_seed(0)
    videos, frames_per_video = 40, 2
    sentences = F.normalize(torch.randn(videos, 384), dim=-1)
    mixing = torch.randn(384, 1280)
    raw = (sentences @ mixing).unsqueeze(1).repeat(1, frames_per_video, 1) + 0.1 * torch.randn(videos, frames_per_video, 1280)
    logits = torch.randn(videos, frames_per_video, 1000)  # uninformative
    split = accuracy.SplitFeatures("synthetic", raw, logits, text_features(sentences), text_features(sentences),
                                   torch.arange(videos))
    with_raw = accuracy.cross_validate(split, lite_backbone, accuracy.TrainedVariant("raw", 3.0, True), folds=2, epochs=15)
    without = accuracy.cross_validate(split, lite_backbone, accuracy.TrainedVariant("plain", 3.0, False), folds=2, epochs=15)
    assert len(with_raw["folds"]) == 2 and with_raw["split"] == "train700, 2-fold"
    assert with_raw["R@1"] > 50 and with_raw["R@1"] > without["R@1"] + 25


def test_markdown_names_the_goal_figures_and_every_section(tmp_path):
    row = lambda name, split, r1: {"variant": name, "split": split, "R@1": r1, "R@5": r1 + 10, "R@10": r1 + 20,
                                   "MdR": 5.0, "Rsum": 3 * r1 + 30}
    study = accuracy.Study(
        zero_shot=[row("ConSE top-10, T=1", "train700", 4.0), row("ConSE top-10, T=3", "train700", 5.0)],
        zero_shot_reported=[row("ConSE top-10, T=3 (shipped)", "1kA", 4.4)],
        trained=[{**row("+ raw", "train700, 5-fold", 19.0), "folds": [1, 2, 3, 4, 5]}],
        methods=[row("meanp", "val", 30.0), row("ensemble of the four heads", "val", 33.0),
                 row("meanp", "test300", 17.0), row("ensemble of the four heads", "test300", 18.3)],
        settings={"folds": 5, "epochs": 20, "conse": {"top_k": 10, "temperature": 3.0}}, seconds=12.0)
    accuracy.write_study(study, tmp_path / "ACCURACY.md", tmp_path / "accuracy.json")
    text = (tmp_path / "ACCURACY.md").read_text()
    assert "chosen on validation: **ensemble of the four heads**" in text and "R@1 **18.3**" in text
    assert "full 1k-A: R@1 **4.4**" in text
    for heading in ("Better offline encoders", "Zero-shot mapping", "Training on train700", "Methods and their ensemble"):
        assert heading in text
    assert '"zero_shot"' in (tmp_path / "accuracy.json").read_text()
