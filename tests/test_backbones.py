import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY_CLIP, save_tiny_clip
from vtr_core.backbones import create_backbone, resolve_backbone_spec
from vtr_core.backbones.base import frames_to_tensor
from vtr_core.contracts import MAX_QUERY_CHARS, clean_queries
from vtr_core.errors import BackboneError, QueryError
from vtr_core.video import read_video


# ---------------------------------------------------------------- shared preprocessing / queries
def test_frames_to_tensor_resizes_shorter_side_and_crops():
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    frames[:, :, 100:] = 255  # right half white
    x = frames_to_tensor(frames, 50, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
    assert x.shape == (2, 3, 50, 50)
    # centre crop of a 50x100 image keeps columns 25..74: left half black, right half white
    assert x[0, :, :, :20].max() < 0.05 and x[0, :, :, 30:].min() > 0.95


def test_clean_queries():
    assert clean_queries(["  a  dog\n runs\x00 "]) == ["a dog runs"]
    assert clean_queries("one") == ["one"]
    assert clean_queries(["x" * MAX_QUERY_CHARS]) == ["x" * MAX_QUERY_CHARS]
    with pytest.raises(QueryError, match=f"query too long \\({MAX_QUERY_CHARS + 1} characters\\)"):
        clean_queries(["x" * (MAX_QUERY_CHARS + 1)])  # refused, never cut: one limit everywhere
    for bad in ([""], ["   \t\n"], ["\x00\x01"]):
        with pytest.raises(QueryError, match="empty query"):
            clean_queries(bad)
    with pytest.raises(QueryError):
        clean_queries([3])
    with pytest.raises(QueryError, match="no queries"):
        clean_queries([])


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(BackboneError, match="unknown backbone"):
        resolve_backbone_spec("resnet")
    with pytest.raises(BackboneError, match="clip:ARCH/PRETRAINED_OR_PATH"):
        resolve_backbone_spec("clip:ViT-B-32")


def test_auto_is_the_offline_default_without_cached_clip_weights(monkeypatch, tmp_path):
    from vtr_core.backbones import OFFLINE_DEFAULT

    monkeypatch.setenv("HOME", str(tmp_path))
    tower, _, name = OFFLINE_DEFAULT.partition(":")
    monkeypatch.setenv("VTR_DATA_DIR", str(tmp_path / "data"))  # no shipped text tower there
    assert resolve_backbone_spec("auto") == "lite"
    shipped = tmp_path / "data" / "precomputed" / "text_towers"
    shipped.mkdir(parents=True)
    (shipped / f"{tower}-{name}.pt").write_bytes(b"a tower")
    assert resolve_backbone_spec("auto") == OFFLINE_DEFAULT
    cache = tmp_path / ".cache" / "clip"
    cache.mkdir(parents=True)
    (cache / "ViT-B-32.pt").write_bytes(b"weights")  # open_clip's URL cache for ViT-B-32/openai
    assert resolve_backbone_spec("auto") == "clip:ViT-B-32/openai"


# ---------------------------------------------------------------- lite
def test_lite_shapes_and_determinism(lite_backbone, video_file):
    frames = read_video(video_file, num_frames=4).frames
    first = lite_backbone.encode_frames(frames)
    second = lite_backbone.encode_frames(frames)
    assert first.frame.shape == (4, 384) and first.patches.shape == (4, 49, 384)
    assert first.raw.shape == (4, lite_backbone.raw_dim) == (4, 1280)
    assert torch.equal(first.frame, second.frame) and torch.equal(first.patches, second.patches)
    # raw features are what ConSE started from: the classifier of the pooled channels
    logits = lite_backbone.image_model.get_classifier()(first.raw)
    assert torch.allclose(lite_backbone.conse(logits), first.frame, atol=1e-5)
    assert torch.allclose(first.frame.norm(dim=-1), torch.ones(4), atol=1e-5)
    text = lite_backbone.encode_text(["a dog runs on the beach", "cooking"])
    assert text.sentence.shape == (2, 384)
    assert text.word_tokens.shape[:2] == text.word_mask.shape and text.word_tokens.shape[-1] == 384
    assert text.word_mask.sum(1).tolist() == [6, 1]  # word pieces without [CLS]/[SEP]/padding
    assert text.tokens[0][1:7] == ["a", "dog", "runs", "on", "the", "beach"]


def test_lite_conse_is_weighted_mean_of_top_class_embeddings(lite_backbone):
    from vtr_core.backbones import lite

    assert lite.CONSE_TOP_K == 10 and lite.CONSE_TEMPERATURE == 3.0
    logits = torch.full((1, 1000), -500.0)
    # softmax(logits / 3) gives probabilities 1:3 between class 1 and 2
    logits[0, 1], logits[0, 2] = 2.0, 2.0 + 3.0 * np.log(3.0)
    got = lite_backbone.conse(logits)[0]
    expected = F.normalize(0.25 * lite_backbone.class_embeddings[1] + 0.75 * lite_backbone.class_embeddings[2], dim=0)
    assert torch.allclose(got, expected, atol=1e-4)


def test_lite_semantics_text_matches_imagenet_class(lite_backbone):
    """A class name sits closest to its own ConSE embedding: the spaces are really joined."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names = ["goldfish", "school bus", "pizza", "volcano"]
    rows = [IMAGENET_CLASSNAMES.index(n) for n in names]
    logits = torch.full((4, 1000), -20.0)
    for i, row in enumerate(rows):
        logits[i, row] = 10.0
    images = lite_backbone.conse(logits)
    texts = lite_backbone.encode_text([f"a video of a {n}" for n in names]).sentence
    assert (texts @ images.T).argmax(1).tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------- clip (open_clip)
@pytest.fixture(scope="module")
def tiny_clip_checkpoint(tmp_path_factory):
    """A real open_clip model of a small architecture, saved the way users save checkpoints."""
    folder = tmp_path_factory.mktemp("tiny_clip")
    model, checkpoint = save_tiny_clip(folder, "tiny-clip-test")
    local_dir = folder / "local"
    local_dir.mkdir()
    (local_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), local_dir / "open_clip_pytorch_model.bin")
    return model, checkpoint, local_dir


def test_clip_loads_checkpoint_file(tiny_clip_checkpoint, video_file):
    model, checkpoint, _ = tiny_clip_checkpoint
    backbone = create_backbone(f"clip:tiny-clip-test/{checkpoint}", "cpu")
    assert backbone.embed_dim == 32 and backbone.patch_grid == (4, 4)
    assert backbone.id.startswith("clip:tiny-clip-test/sha256:")
    frames = read_video(video_file, num_frames=3).frames
    encoded = backbone.encode_frames(frames)
    assert encoded.frame.shape == (3, 32) and encoded.patches.shape == (3, 16, 32)

    # the weights really came from the file: the frame features equal the saved model's
    pixels = frames_to_tensor(frames, 32, backbone.mean, backbone.std, torch.device("cpu"))
    model.eval()
    model.visual.output_tokens = False
    with torch.no_grad():
        assert torch.allclose(encoded.frame, model.encode_image(pixels), atol=1e-5)
        # patch tokens pass through the same ln_post and proj as the class token
        captured = {}
        hook = model.visual.ln_post.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
        model.encode_image(pixels)
        hook.remove()
    assert torch.allclose(encoded.patches, captured["x"][:, 1:] @ model.visual.proj, atol=1e-5)


def test_clip_word_tokens_share_the_sentence_projection(tiny_clip_checkpoint):
    _, checkpoint, _ = tiny_clip_checkpoint
    backbone = create_backbone(f"clip:tiny-clip-test/{checkpoint}", "cpu")
    text = backbone.encode_text(["a red car drives", "cat"])
    assert text.sentence.shape == (2, 32) and text.word_tokens.shape == (2, 77, 32)
    assert text.word_mask.sum(1).tolist() == [4, 1]
    assert text.tokens[0][1:5] == ["a</w>", "red</w>", "car</w>", "drives</w>"]
    eot = 5  # <start> a red car drives <end>
    assert torch.allclose(text.word_tokens[0, eot], text.sentence[0], atol=1e-5)


def test_clip_local_dir_and_fingerprint(tiny_clip_checkpoint, tmp_path):
    _, checkpoint, local_dir = tiny_clip_checkpoint
    backbone = create_backbone(f"clip:local-dir:{local_dir}", "cpu")
    assert backbone.embed_dim == 32 and backbone.id.startswith("clip:local-dir:")
    from_file = create_backbone(f"clip:tiny-clip-test/{checkpoint}", "cpu")
    assert torch.allclose(backbone.encode_text(["dog"]).sentence, from_file.encode_text(["dog"]).sentence, atol=1e-5)

    # other weights, other id: an index built with one cannot be read with the other
    other = tmp_path / "other.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"]["logit_scale"] = state["state_dict"]["logit_scale"] + 1
    torch.save(state, other)
    assert create_backbone(f"clip:tiny-clip-test/{other}", "cpu").id != from_file.id


def test_clip_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="no such file"):
        create_backbone(f"clip:ViT-B-32/{tmp_path}/absent.pt", "cpu")
    with pytest.raises(BackboneError, match="cannot load CLIP"):
        create_backbone("clip:No-Such-Arch/openai", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lite_on_cuda_matches_cpu(lite_backbone, video_file):
    frames = read_video(video_file, num_frames=4).frames
    gpu = create_backbone("lite", "cuda").encode_frames(frames)
    cpu = lite_backbone.encode_frames(frames)
    assert F.cosine_similarity(gpu.frame, cpu.frame).min() > 0.99
