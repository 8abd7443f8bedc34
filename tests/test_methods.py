"""The heads' math on small tensors, checked against values computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods import METHODS, create_head, load_head, save_head, select_rows
from vtr_core.methods.camoe import CAMoE
from vtr_core.methods.eercf import EERCF
from vtr_core.methods.explanation import AlignmentsPanel, ConceptsPanel, FramesPanel, GatesPanel, PatchesPanel
from vtr_core.methods.losses import pearson_constraint, symmetric_cross_entropy
from vtr_core.methods.s3ma import S3MA, S3MAConfig, build_vocabulary, spherical_kmeans
from vtr_core.retrieval.ranking import (
    RERANK_OFFSET,
    all_pair_scores,
    rank_order,
    two_stage_scores,
)


def text_features(sentences: torch.Tensor, words: torch.Tensor | None = None, texts=None, tokens=None) -> TextFeatures:
    words = sentences[:, None] if words is None else words
    return TextFeatures(sentence=sentences, word_tokens=words, word_mask=torch.ones(words.shape[:2], dtype=torch.bool),
                        tokens=tokens or [["w"] * words.shape[1] for _ in range(len(sentences))],
                        texts=texts or ["caption"] * len(sentences))


# --------------------------------------------------------------------------------- losses
def test_symmetric_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    row = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.exp(3) / (math.exp(1) + math.exp(3)))) / 2
    col = -(math.log(math.exp(2) / (math.exp(2) + math.exp(1))) + math.log(math.exp(3) / (1 + math.exp(3)))) / 2
    assert symmetric_cross_entropy(logits).item() == pytest.approx((row + col) / 2, abs=1e-6)


def test_pearson_constraint_by_hand():
    text = torch.tensor([[1.0], [2.0], [3.0]])
    assert pearson_constraint(text, text).item() == pytest.approx(0.0, abs=1e-5)  # correlation 1
    # perfectly anti-correlated: C = -1, loss = 0.14 * (1 - (-1))^2
    assert pearson_constraint(text, -text).item() == pytest.approx(0.56, abs=1e-4)
    text2 = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    visual2 = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    # C = [[1, -1], [1, -1]]: diagonal (1, -1) -> 0.14 * 4; off-diagonal squares 1 + 1
    assert pearson_constraint(text2, visual2).item() == pytest.approx(0.56, abs=1e-4)
    assert pearson_constraint(text2, visual2, off_diagonal_weight=0.5).item() == pytest.approx(0.56 + 1.0, abs=1e-4)


# --------------------------------------------------------------------------------- eercf
def eercf_pair():
    head = EERCF(2, EERCF.config_class(num_frames=2, temporal_layers=1))
    frames = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one video, two orthogonal frames
    query = text_features(torch.tensor([[0.6, 0.8]]))
    return head, head.text_state(query), head.video_state(frames, None)


def test_eercf_weak_frame_and_tib_by_hand():
    head, q, v = eercf_pair()
    terms = head.similarity_terms(q, v)
    s1, s2 = 0.6, 0.8  # t . f_i
    a1, a2 = (math.exp(s1 / 0.01), math.exp(s2 / 0.01))
    assert terms["S_wf"].item() == pytest.approx((a1 * s1 + a2 * s2) / (a1 + a2), abs=1e-6)
    w1, w2 = math.exp(s1 / 0.1), math.exp(s2 / 0.1)
    w1, w2 = w1 / (w1 + w2), w2 / (w1 + w2)
    # TIB: t . norm(w1 f'_1 + w2 f'_2), with f' = f before training
    expected = (0.6 * w1 + 0.8 * w2) / math.sqrt(w1**2 + w2**2)
    assert terms["S_sf"].item() == pytest.approx(expected, abs=1e-6)
    mean = F.normalize(torch.tensor([0.5, 0.5]), dim=0)
    assert terms["S_v"].item() == pytest.approx(float(mean @ torch.tensor([0.6, 0.8])), abs=1e-6)


def test_eercf_frame_reweighting_matrix_is_used():
    head, q, v = eercf_pair()
    with torch.no_grad():
        head.A.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swap the frame weights
    s1, s2 = 0.6, 0.8
    a1, a2 = math.exp(s1 / 0.01), math.exp(s2 / 0.01)
    swapped = (a2 * s1 + a1 * s2) / (a1 + a2)
    assert head.similarity_terms(q, v)["S_wf"].item() == pytest.approx(swapped, abs=1e-6)


def test_eercf_freeze_identity():
    head = EERCF(4, EERCF.config_class(num_frames=3, temporal_layers=1, freeze_identity=True))
    assert not head.G.requires_grad and not head.A.requires_grad
    assert torch.equal(head.G, torch.eye(4)) and torch.equal(head.A, torch.eye(3))


def test_eercf_patch_term_and_training_loss():
    torch.manual_seed(0)
    head = EERCF(8, EERCF.config_class(num_frames=3, temporal_layers=1))
    frames, patches = torch.randn(4, 3, 8), torch.randn(4, 3, 5, 8)
    query = text_features(torch.randn(4, 8))
    q, v = head.text_state(query), head.video_state(frames, patches)
    t, p = q["sentence"][0], v["patches"][1]  # [T*P, D]
    s = p @ t
    expected = (torch.softmax(s / 0.01, 0) * s).sum()
    assert head.similarity_terms(q, v)["S_wp"][0, 1].item() == pytest.approx(expected.item(), abs=1e-5)
    loss, parts = head.loss(query, frames, patches)
    loss.backward()
    assert set(parts) == {"loss", "weak", "strong", "pearson"}
    assert head.G.grad is not None and head.A.grad is not None and head.adapter.visual.linear.weight.grad is not None


def test_two_stage_lifts_candidates_and_matches_fine_scores():
    torch.manual_seed(1)
    head = EERCF(8, EERCF.config_class(num_frames=3, temporal_layers=1))
    q = head.text_state(text_features(torch.randn(5, 8)))
    v = head.video_state(torch.randn(20, 3, 8), torch.randn(20, 3, 4, 8))
    scores, candidates = two_stage_scores(head, q, v, top_k=4)
    assert candidates.sum(1).tolist() == [4] * 5
    fine = all_pair_scores(head, q, v)
    coarse = head.coarse_similarity(q, v)
    assert torch.allclose(scores[candidates], fine[candidates], atol=1e-5)
    assert torch.allclose(scores[~candidates], coarse[~candidates])
    order = rank_order(scores, candidates)
    assert (order[candidates].min() > order[~candidates].max()) and RERANK_OFFSET == 100.0
    assert torch.equal(coarse.topk(4, 1).indices.sort(1).values, torch.nonzero(candidates)[:, 1].view(5, 4))


# --------------------------------------------------------------------------------- s3ma
def test_sparse_projection_by_hand():
    head = S3MA(2, S3MAConfig(active_concepts=2, temporal_layers=1))
    concepts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    head.init_concepts(concepts, ["red", "blue", "green", "dog"])  # K >= words: one concept per word
    x = torch.tensor([[0.8, 0.6]])
    # cos with the concepts: 0.8, 0.6, -0.8, 0.96 -> ReLU -> keep the top 2 (0.96, 0.8) -> normalise
    expected = torch.tensor([0.8, 0.0, 0.0, 0.96]) / math.hypot(0.8, 0.96)
    assert torch.allclose(head.sparse(x)[0], expected, atol=1e-6)
    assert head.concept_targets(["A red dog and the sky"]).tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_spherical_kmeans_groups_similar_words():
    vectors = torch.tensor([[1.0, 0.05], [1.0, -0.05], [0.05, 1.0], [-0.05, 1.0]]).numpy()
    centroids, assignment = spherical_kmeans(vectors, 2, seed=0)
    assert assignment[0] == assignment[1] != assignment[2] == assignment[3]
    assert abs(float((centroids**2).sum(1)[0]) - 1.0) < 1e-5
    assert build_vocabulary(["a dog runs", "the dog sleeps"]) == ["dog", "runs", "sleeps"]


def test_s3ma_score_is_the_mean_of_four_terms():
    torch.manual_seed(2)
    head = S3MA(6, S3MAConfig(active_concepts=3, temporal_layers=1))
    head.init_concepts(torch.randn(10, 6), [f"w{i}" for i in range(10)])
    q = head.text_state(text_features(torch.randn(3, 6)))
    v = head.video_state(torch.randn(4, 2, 6), None)
    terms = head.similarity_terms(q, v)
    assert torch.allclose(head.similarity(q, v), sum(terms.values()) / 4, atol=1e-6)
    assert (v["sparse"] > 0).sum(1).max() <= 3  # at most M active concepts


# --------------------------------------------------------------------------------- camoe
def test_camoe_gate_starts_uniform_and_mixes_streams():
    torch.manual_seed(3)
    head = CAMoE(4, CAMoE.config_class(temporal_layers=1))
    texts = ["a man rides a horse", "a red car"]
    tokens = [["[CLS]", "a", "man", "rides", "a", "horse", "[SEP]"], ["[CLS]", "a", "red", "car", "[SEP]", "[PAD]", "[PAD]"]]
    words = torch.randn(2, 7, 4)
    query = TextFeatures(torch.randn(2, 4), words, torch.tensor([[0, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0, 0]]).bool(),
                         tokens, texts)
    q, v = head.text_state(query), head.video_state(torch.randn(3, 5, 4), None)
    assert torch.allclose(q["gate"], torch.full((2, 3), 1 / 3))
    terms = head.similarity_terms(q, v)
    assert torch.allclose(head.similarity(q, v), (terms["action"] + terms["entity"] + terms["scene"]) / 3, atol=1e-6)
    with torch.no_grad():
        head.gate.bias.copy_(torch.tensor([math.log(2.0), 0.0, 0.0]))
    q = head.text_state(query)
    assert torch.allclose(q["gate"][0], torch.tensor([0.5, 0.25, 0.25]))
    # action text is the mean of the verb's token ("rides"); entity averages each noun's best frame
    assert torch.allclose(q["action"][0], F.normalize(words[0, 3], dim=0), atol=1e-6)
    frames = v["frames"]
    nouns = F.normalize(words[0, [2, 5]], dim=-1)  # man, horse
    expected_entity = (nouns @ frames[1].T).max(-1).values.mean()
    assert terms["entity"][0, 1].item() == pytest.approx(expected_entity.item(), abs=1e-5)
    # "a red car" has no verb: its action text falls back to the sentence
    assert torch.allclose(q["action"][1], q["sentence"][1])


# --------------------------------------------------------------------------------- every head
@pytest.fixture(scope="module")
def heads(lite_backbone):
    corpus = ["a dog runs on grass", "a man drives a red car", "a woman cooks soup in a kitchen"]
    return {name: create_head(name, lite_backbone, num_frames=3, corpus=corpus) for name in METHODS}


def test_untrained_heads_reduce_to_mean_pooling(heads):
    torch.manual_seed(4)
    frames = F.normalize(torch.randn(6, 3, 384), dim=-1)
    raw = torch.randn(6, 3, 1280)
    query = text_features(F.normalize(torch.randn(2, 384), dim=-1))
    meanp = heads["meanp"]
    expected = meanp.similarity(meanp.text_state(query), meanp.video_state(frames, None))
    # the raw-feature projection starts at zero: untrained heads ignore raw features
    assert torch.equal(meanp.similarity(meanp.text_state(query), meanp.video_state(frames, None, raw)), expected)
    for name in ("eercf", "s3ma"):
        head = heads[name]
        assert torch.allclose(head.coarse_similarity(head.text_state(query), head.video_state(frames, None, raw)), expected, atol=1e-5)


def test_raw_projection_adds_a_learned_map_of_layer_normed_raw_features(lite_backbone):
    head = create_head("meanp", lite_backbone, num_frames=2)
    assert head.raw_dim == lite_backbone.raw_dim == 1280
    torch.manual_seed(6)
    frames, raw = torch.randn(1, 2, 384), torch.randn(1, 2, 1280) * 3 + 1
    weight = torch.randn(384, 1280) * 0.01
    with torch.no_grad():
        head.adapter.visual_raw.linear.weight.copy_(weight)
    normed = (raw - raw.mean(-1, keepdim=True)) / torch.sqrt(raw.var(-1, unbiased=False, keepdim=True) + 1e-5)
    expected = F.normalize(frames + normed @ weight.T, dim=-1)
    assert torch.allclose(head.video_state(frames, None, raw)["frames"], expected, atol=1e-5)
    # the projection learns: a contrastive step moves its weights
    text = text_features(F.normalize(torch.randn(2, 384), dim=-1))
    loss, _ = head.loss(text, torch.randn(2, 2, 384), None, torch.randn(2, 2, 1280))
    loss.backward()
    assert head.adapter.visual_raw.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(METHODS))
def test_explain_agrees_with_similarity(heads, lite_backbone, name):
    head = heads[name]
    torch.manual_seed(5)
    text = lite_backbone.encode_text(["a man drives a red car on the road", "a dog"])
    frames, patches = torch.randn(3, 3, 384), torch.randn(3, 3, 49, 384)
    q, v = head.text_state(text), head.video_state(frames, patches)
    similarity = head.similarity(q, v)
    explanation = head.explain(select_rows(q, [0]), select_rows(v, [2]), text.select([0]))
    assert explanation.score == pytest.approx(similarity[0, 2].item(), abs=1e-5)
    assert explanation.method == name
    frames_panel = explanation.panel(FramesPanel)
    assert sum(frames_panel.attention) == pytest.approx(1.0, abs=1e-5) and len(frames_panel.attention) == 3
    assert all(len(series) == 3 for series in frames_panel.series.values())
    patches = explanation.panel(PatchesPanel)
    if name == "eercf":  # the head's own attention over each frame's 49 patches
        assert len(patches.weights) == 3 and len(patches.weights[0]) == 49 and patches.source == "head"
    else:
        assert patches is None
    concepts = explanation.panel(ConceptsPanel)
    assert (concepts is not None) == (name == "s3ma")
    if concepts:
        assert concepts.query and len(concepts.frames) == 3 and concepts.frame_map["values"]
        assert all(c["words"] for c in concepts.query)
    gates = explanation.panel(GatesPanel)
    assert (gates is not None) == (name == "camoe")
    if gates:
        assert sum(gates.gates.values()) == pytest.approx(1.0)
        assert {a["word"] for a in explanation.panel(AlignmentsPanel).rows} == {"man", "car", "road"}


@pytest.mark.parametrize("name", list(METHODS))
def test_checkpoint_round_trip(heads, lite_backbone, tmp_path, name):
    head = heads[name]
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    path = tmp_path / f"{name}.pt"
    save_head(head, path, lite_backbone.id, num_frames=3)
    loaded = load_head(path, lite_backbone, method=name, num_frames=3)
    text = lite_backbone.encode_text(["a man drives a car"])
    frames, raw = torch.randn(2, 3, 384), torch.randn(2, 3, 1280)
    expected = head.similarity(head.text_state(text), head.video_state(frames, None, raw))
    assert not torch.allclose(expected, head.similarity(head.text_state(text), head.video_state(frames, None)))
    assert loaded.raw_dim == 1280
    assert torch.allclose(expected, loaded.similarity(loaded.text_state(text), loaded.video_state(frames, None, raw)), atol=1e-6)
    # shipped checkpoints are float16 on disk, half the size, and load back as float32
    save_head(head, tmp_path / "half.pt", lite_backbone.id, num_frames=3, half=True)
    half = load_head(tmp_path / "half.pt", lite_backbone, method=name, num_frames=3)
    assert all(p.dtype == torch.float32 for p in half.parameters())
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * path.stat().st_size
    assert torch.allclose(expected, half.similarity(half.text_state(text), half.video_state(frames, None, raw)), atol=2e-2)


def test_checkpoint_mismatches_are_clear(heads, lite_backbone, tmp_path):
    from vtr_core.methods import CheckpointError

    path = tmp_path / "meanp.pt"
    save_head(heads["meanp"], path, lite_backbone.id, num_frames=3)
    with pytest.raises(CheckpointError, match="is for method meanp, not eercf"):
        load_head(path, lite_backbone, method="eercf")
    save_head(heads["meanp"], path, "clip:ViT-B-32/openai", num_frames=3)
    with pytest.raises(CheckpointError, match="trained on backbone clip:ViT-B-32/openai"):
        load_head(path, lite_backbone)
    save_head(heads["eercf"], path, lite_backbone.id, num_frames=3)
    with pytest.raises(CheckpointError, match="trained with 3 frames, the index has 12"):
        load_head(path, lite_backbone, num_frames=12)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable head checkpoint"):
        load_head(tmp_path / "junk.pt", lite_backbone)


class Payload:
    """An arbitrary object: pickles of such things must never be loaded."""


def test_checkpoint_loading_refuses_arbitrary_pickles(tmp_path, lite_backbone):
    from vtr_core.methods import CheckpointError

    path = tmp_path / "evil.pt"
    torch.save({"format": "vtr-head", "version": 1, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a loadable head checkpoint"):
        load_head(path, lite_backbone)


# --------------------------------------------------------------------------------- loss compositions
def test_s3ma_loss_is_contrastive_plus_similarity_plus_alignment():
    torch.manual_seed(6)
    head = S3MA(4, S3MAConfig(active_concepts=2, temporal_layers=1))
    head.init_concepts(F.normalize(torch.randn(3, 4), dim=-1), ["dog", "ball", "car"])
    text = text_features(torch.randn(2, 4), texts=["a dog with a ball", "a red car"])
    frames = torch.randn(2, 3, 4)
    loss, parts = head.loss(text, frames, None)
    q, v = head.text_state(text), head.video_state(frames, None)
    terms, scale = head.similarity_terms(q, v), head.scale
    contrastive = symmetric_cross_entropy(scale * terms["dense_coarse"]) + symmetric_cross_entropy(scale * terms["dense_fine"])
    similarity = symmetric_cross_entropy(scale * terms["sparse_coarse"]) + symmetric_cross_entropy(scale * terms["sparse_fine"])
    anchors = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # dog+ball | car

    def bce(x):  # written out: -(y log s + (1 - y) log(1 - s)), s = sigmoid((cos - 0.2) / 0.05)
        s = torch.sigmoid((head.concept_scores(x) - 0.2) / 0.05)
        return -(anchors * s.log() + (1 - anchors) * (1 - s).log()).mean()

    alignment = bce(q["coarse"]) + bce(v["coarse"])
    assert torch.equal(head.concept_targets(text.texts), anchors)
    assert parts["contrastive"] == pytest.approx(contrastive.item(), rel=1e-5)
    assert parts["similarity"] == pytest.approx(similarity.item(), rel=1e-5)
    assert parts["alignment"] == pytest.approx(alignment.item(), rel=1e-4)
    assert loss.item() == pytest.approx((contrastive + similarity + alignment).item(), rel=1e-4)


def test_eercf_loss_weights():
    torch.manual_seed(7)
    head = EERCF(6, EERCF.config_class(num_frames=3, temporal_layers=1))
    loss, parts = head.loss(text_features(torch.randn(4, 6)), torch.randn(4, 3, 6), torch.randn(4, 3, 2, 6))
    assert loss.item() == pytest.approx(0.8 * parts["weak"] + 0.2 * parts["strong"] + 0.001 * parts["pearson"], rel=1e-5)


def test_camoe_loss_is_fused_dsl_plus_a_third_of_the_streams():
    from vtr_core.methods.losses import dual_softmax_loss

    torch.manual_seed(8)
    head = CAMoE(4, CAMoE.config_class(temporal_layers=1))
    tokens = [["[CLS]", "a", "dog", "runs", "[SEP]"]] * 3
    text = TextFeatures(torch.randn(3, 4), torch.randn(3, 5, 4), torch.ones(3, 5, dtype=torch.bool), tokens,
                        ["a dog runs"] * 3)
    frames = torch.randn(3, 2, 4)
    loss, parts = head.loss(text, frames, None)
    q, v = head.text_state(text), head.video_state(frames, None)
    terms = head.similarity_terms(q, v)
    fused = dual_softmax_loss(head.scale * head.similarity(q, v), 1000.0)
    streams = sum(dual_softmax_loss(head.scale * terms[n], 1000.0) for n in ("action", "entity", "scene"))
    assert parts["fused"] == pytest.approx(fused.item(), rel=1e-5)
    assert loss.item() == pytest.approx((fused + streams / 3).item(), rel=1e-5)


def test_best_shipped_method_is_chosen_by_validation_score(heads, lite_backbone, tmp_path, monkeypatch):
    import vtr_core.methods as methods

    monkeypatch.setenv("VTR_DATA_DIR", str(tmp_path))  # resources: shipped files from elsewhere
    shipped = tmp_path / "precomputed" / "heads"
    shipped.mkdir(parents=True)
    assert methods.best_shipped_method(lite_backbone) == "meanp"  # nothing shipped
    slug = methods.backbone_slug(lite_backbone)
    for name, score in (("meanp", 150.0), ("camoe", 161.0), ("eercf", 158.0)):
        save_head(heads[name], shipped / f"{name}-{slug}.pt", lite_backbone.id, num_frames=3,
                  extra={"record": {"val_rsum": score}})
    save_head(heads["s3ma"], shipped / f"s3ma-{slug}.pt", lite_backbone.id, num_frames=3)  # no record: not a candidate
    assert methods.best_shipped_method(lite_backbone) == "camoe"
    assert methods.default_checkpoint("camoe", lite_backbone) == shipped / f"camoe-{slug}.pt"
    (shipped / f"camoe-{slug}.pt").write_bytes(b"not a checkpoint")
    assert methods.best_shipped_method(lite_backbone) == "eercf"
