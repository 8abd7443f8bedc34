"""Importing checkpoints trained with the papers' public code (CLIP4Clip meanP/seqTransf, EERCF).

A tiny CLIP (random weights) is saved the way that code saves a model: OpenAI's key names under
`clip.`, linear and attention weights in float16, the head's parameters beside them. After the
import, the backbone's features and the head's scores must equal a forward written here from the
released formulas (module_clip.py, module_cross.py, modeling.py's _loose_similarity, EERCF's
XCLIP._loose_similarity and main_eercf.py's re-rank): LayerNorm eps 1e-5 in the towers and the
TF-style 1e-12 in the temporal transformer, QuickGELU, the outer residual of seqTransf.
"""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import REPO
from vtr_core.errors import CheckpointError

WIDTH, FRAMES, LAYERS, HEADS = 128, 4, 2, 2  # CLIP4Clip: heads = width // 64
TINY = {"embed_dim": WIDTH, "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": WIDTH, "heads": HEADS, "layers": 2}}
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
LOGIT_SCALE = math.log(100.0)
BLOCK_SHAPES = {"attn.in_proj_weight": (3 * WIDTH, WIDTH), "attn.in_proj_bias": (3 * WIDTH,),
                "attn.out_proj.weight": (WIDTH, WIDTH), "attn.out_proj.bias": (WIDTH,),
                "ln_1.weight": (WIDTH,), "ln_1.bias": (WIDTH,), "mlp.c_fc.weight": (4 * WIDTH, WIDTH),
                "mlp.c_fc.bias": (4 * WIDTH,), "mlp.c_proj.weight": (WIDTH, 4 * WIDTH), "mlp.c_proj.bias": (WIDTH,),
                "ln_2.weight": (WIDTH,), "ln_2.bias": (WIDTH,)}
HALF_IN_CLIP4CLIP = ("conv1", "attn.", "mlp.", "proj", "text_projection")  # what their convert_weights turns to fp16


# ------------------------------------------------------------------ files as the released code saves them
@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory) -> str:
    import open_clip

    folder = tmp_path_factory.mktemp("configs")
    (folder / "tinyimp.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "tinyimp.json")
    return "tinyimp"


def released_tower(seed: int = 0) -> dict[str, torch.Tensor]:
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model("tinyimp")
    tower = {}
    for key, value in model.state_dict().items():
        value = value.clone()
        if key == "logit_scale":
            value.fill_(LOGIT_SCALE)
        elif any(part in key for part in HALF_IN_CLIP4CLIP) and "ln_" not in key:
            value = value.half()
        tower["clip." + key] = value
    return tower


def temporal_weights(generator: torch.Generator) -> dict[str, torch.Tensor]:
    # small positions: with frames as small (below), LayerNorm's eps (1e-12 there, 1e-5 elsewhere) shows
    weights = {"frame_position_embeddings.weight": torch.randn(77, WIDTH, generator=generator) * 1e-3}
    for i in range(LAYERS):
        for name, shape in BLOCK_SHAPES.items():
            value = torch.randn(shape, generator=generator) * (0.1 if "ln_" not in name else 0.05)
            weights[f"transformerClip.resblocks.{i}.{name}"] = value + (1.0 if name.endswith("ln_1.weight")
                                                                         or name.endswith("ln_2.weight") else 0.0)
    return weights


def released_state(variant: str, frames: int = FRAMES) -> dict[str, torch.Tensor]:
    state = released_tower()
    generator = torch.Generator().manual_seed(1)
    if variant in ("seqTransf", "eercf"):
        state.update(temporal_weights(generator))
    if variant == "eercf":
        state["global_mat_weight"] = torch.eye(WIDTH) + 0.05 * torch.randn(WIDTH, WIDTH, generator=generator)
        state["frame_logit_weight"] = torch.eye(frames) + 0.1 * torch.randn(frames, frames, generator=generator)
    return state


# ------------------------------------------------------------------ the released forward, written out
def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    variance = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


def attention(x, sd, prefix, heads, mask=None):
    B, L, D = x.shape
    q, k, v = (x @ sd[prefix + "attn.in_proj_weight"].float().T + sd[prefix + "attn.in_proj_bias"].float()).split(D, -1)
    q, k, v = (t.view(B, L, heads, D // heads).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // heads)
    if mask is not None:
        scores = scores + mask
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D)
    return out @ sd[prefix + "attn.out_proj.weight"].float().T + sd[prefix + "attn.out_proj.bias"].float()


def block(x, sd, prefix, heads, eps, mask=None):
    g = lambda name: sd[prefix + name].float()  # noqa: E731
    x = x + attention(layer_norm(x, g("ln_1.weight"), g("ln_1.bias"), eps), sd, prefix, heads, mask)
    h = layer_norm(x, g("ln_2.weight"), g("ln_2.bias"), eps) @ g("mlp.c_fc.weight").T + g("mlp.c_fc.bias")
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + h @ g("mlp.c_proj.weight").T + g("mlp.c_proj.bias")


def encode_image(sd, pixels):
    g = lambda name: sd["clip.visual." + name].float()  # noqa: E731
    x = F.conv2d(pixels, g("conv1.weight"), stride=8).flatten(2).transpose(1, 2)
    x = torch.cat([g("class_embedding").expand(len(x), 1, -1), x], 1) + g("positional_embedding")
    x = layer_norm(x, g("ln_pre.weight"), g("ln_pre.bias"), 1e-5)
    for i in range(2):
        x = block(x, sd, f"clip.visual.transformer.resblocks.{i}.", 64 // 64, 1e-5)
    x = layer_norm(x, g("ln_post.weight"), g("ln_post.bias"), 1e-5) @ g("proj")
    return x[:, 0], x[:, 1:]  # CLS per frame, patch tokens


def encode_text(sd, ids):
    g = lambda name: sd["clip." + name].float()  # noqa: E731
    x = g("token_embedding.weight")[ids] + g("positional_embedding")[: ids.shape[1]]
    causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
    for i in range(2):
        x = block(x, sd, f"clip.transformer.resblocks.{i}.", HEADS, 1e-5, causal)
    x = layer_norm(x, g("ln_final.weight"), g("ln_final.bias"), 1e-5) @ g("text_projection")
    return x[torch.arange(len(ids)), ids.argmax(-1)]  # the EOT token


def seq_transf(sd, frames):
    x = frames + sd["frame_position_embeddings.weight"][: frames.shape[1]]
    for i in range(LAYERS):
        x = block(x, sd, f"transformerClip.resblocks.{i}.", HEADS, 1e-12)
    return x + frames  # the residual around the transformer, without the positions


def mean_p(text, frames):
    video = F.normalize(F.normalize(frames, dim=-1).mean(1), dim=-1)
    return math.exp(LOGIT_SCALE) * F.normalize(text, dim=-1) @ video.T


def eercf_scores(sd, text, frames, patches):
    scale, t = math.exp(LOGIT_SCALE), F.normalize(text, dim=-1)
    temporal = F.normalize(seq_transf(sd, frames), dim=-1)
    video = F.normalize(temporal.mean(1), dim=-1)
    f = F.normalize(frames, dim=-1)
    s = torch.einsum("td,vfd->vtf", t, f)
    weak_frame = (s * (torch.softmax(s / 0.01, -1) @ sd["frame_logit_weight"])).sum(-1).T
    p = F.normalize(patches, dim=-1).flatten(1, 2)
    init = torch.einsum("td,vnd->tvn", t, p)
    weak_patch = (init * torch.softmax(init / 0.01, -1)).sum(-1)
    gate = torch.softmax(torch.einsum("td,vfd->tvf", t, f) / 0.1, -1)
    strong = torch.stack([F.normalize((gate[i][:, :, None] * temporal).sum(1), dim=-1) @ t[i] for i in range(len(t))])
    return {"S_v": scale * (t @ sd["global_mat_weight"]) @ video.T, "S_wf": scale * weak_frame,
            "S_wp": scale * weak_patch, "S_sf": scale * strong}


def eercf_rerank(scores, top_k):
    """main_eercf.py: the top k by S_v get 100 + 0.8 wf + 0.2 sf + 0.2 wp + 0.5 v, the rest keep S_v."""
    final = scores["S_v"].clone()
    for i in range(len(final)):
        top = torch.argsort(scores["S_v"][i])[-top_k:]
        final[i, top] = 100.0 + 0.8 * scores["S_wf"][i, top] + 0.2 * scores["S_sf"][i, top] + \
            0.2 * scores["S_wp"][i, top] + 0.5 * scores["S_v"][i, top]
    return final


# ------------------------------------------------------------------ the tests
def imported(tmp_path, variant: str, arch: str, frames: int = FRAMES):
    from vtr_core.backbones import create_backbone
    from vtr_core.methods import load_head
    from vtr_core.methods.released import import_checkpoint

    state = released_state(variant, frames)
    source = tmp_path / f"pytorch_model.bin.{variant}"
    torch.save(state, source)
    report = import_checkpoint(source, "eercf" if variant == "eercf" else "clip4clip", tmp_path / variant, arch=arch)
    backbone = create_backbone(report.backbone_spec, "cpu")
    return state, report, backbone, load_head(report.head_path, backbone)


def features(backbone, sd, texts):
    """The backbone's features beside the released forward's, for 3 videos of FRAMES frames."""
    from open_clip import get_tokenizer

    frames = np.random.default_rng(0).integers(0, 256, (3 * FRAMES, 32, 32, 3), dtype=np.uint8)
    ours = backbone.encode_frames(frames)
    pixels = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(STD).view(1, 3, 1, 1)
    frame_ref, patch_ref = encode_image(sd, pixels)
    text = backbone.encode_text(texts)
    text_ref = encode_text(sd, get_tokenizer("tinyimp")(texts))
    for got, expected in ((ours.frame, frame_ref), (ours.patches, patch_ref), (text.sentence, text_ref)):
        assert (got - expected).abs().max() <= 1e-4
    return ours.frame.view(3, FRAMES, -1), ours.patches.view(3, FRAMES, -1, WIDTH), text, frame_ref.view(3, FRAMES, -1)


TEXTS = ["a man is cooking in a kitchen", "a cartoon bird flaps its wings", "people dance at a party"]


@pytest.mark.parametrize("variant", ["meanP", "seqTransf"])
def test_clip4clip_import_is_the_released_model(tmp_path, tiny_arch, variant):
    sd, report, backbone, head = imported(tmp_path, variant, tiny_arch)
    assert report.method == "meanp" and report.variant == variant and report.tower_keys == len(released_tower())
    assert backbone.spec == f"clip:tinyimp/{(tmp_path / variant / 'backbone.pt').resolve()}"
    frames, _, text, frame_ref = features(backbone, sd, TEXTS)
    ours = head.scale * head.similarity(head.text_state(text), head.video_state(frames, None))
    reference = mean_p(encode_text(sd, __import__("open_clip").get_tokenizer("tinyimp")(TEXTS)),
                       seq_transf(sd, frame_ref) if variant == "seqTransf" else frame_ref)
    assert (ours - reference).abs().max() <= 1e-4
    assert head.config.sequence_encoder == (variant == "seqTransf")
    if variant == "seqTransf":  # near-constant frames: the temporal LayerNorm's eps decides the output
        small = torch.randn(2, FRAMES, WIDTH, generator=torch.Generator().manual_seed(2)) * 1e-3
        assert (head.temporal(small) - seq_transf(sd, small)).abs().max() <= 1e-4


def test_eercf_import_is_the_released_model(tmp_path, tiny_arch):
    from vtr_core.retrieval.ranking import rank_order, two_stage_scores

    sd, report, backbone, head = imported(tmp_path, "eercf", tiny_arch)
    assert report.method == "eercf" and head.num_frames == FRAMES
    assert report.key_map["G"] == "global_mat_weight" and report.key_map["A"] == "frame_logit_weight"
    frames, patches, text, _ = features(backbone, sd, TEXTS)
    queries, videos = head.text_state(text), head.video_state(frames, patches)
    reference = eercf_scores(sd, text.sentence, frames, patches)
    ours = head.similarity_terms(queries, videos)
    for name in ("S_v", "S_wf", "S_wp", "S_sf"):
        assert (head.scale * ours[name] - reference[name]).abs().max() <= 1e-4, name
    for top_k in (1, 2):  # the two-stage search: the same order as main_eercf.py's re-rank
        scores, candidates = two_stage_scores(head, queries, videos, top_k)
        expected = eercf_rerank(reference, top_k)
        assert torch.equal(rank_order(scores, candidates).argsort(1, descending=True), expected.argsort(1, descending=True))
        fine = expected - 100.0 * candidates  # the candidates' fine scores, on our (cosine) scale
        assert (scores[candidates] * head.scale - fine[candidates]).abs().max() <= 1e-4


def test_imported_model_is_found_beside_its_backbone(tmp_path, tiny_arch):
    """`search` and the app start from the imported head for the imported backbone."""
    from vtr_core.methods import best_shipped_method, default_checkpoint

    _, report, backbone, _ = imported(tmp_path, "eercf", tiny_arch)
    assert best_shipped_method(backbone) == "eercf"
    assert str(default_checkpoint("eercf", backbone)) == report.head_path
    assert default_checkpoint("s3ma", backbone) is None
    record = json.loads((tmp_path / "eercf" / "import.json").read_text())
    assert record["backbone_id"] == backbone.id and record["format"] == "eercf" and record["head"] == "head.pt"


def run_import(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vtr_core", "import-checkpoint", *args], cwd=REPO,
                          capture_output=True, text=True)


def refused(tmp_path, state, fmt: str = "clip4clip", arch: str | None = "tinyimp") -> str:
    from vtr_core.methods.released import import_checkpoint

    torch.save(state, tmp_path / "bad.bin")
    with pytest.raises(CheckpointError) as caught:
        import_checkpoint(tmp_path / "bad.bin", fmt, tmp_path / "out", arch=arch)
    assert not (tmp_path / "out" / "import.json").exists()
    return str(caught.value)


def test_malformed_checkpoints_are_refused_in_one_line(tmp_path, tiny_arch):
    eercf = released_state("eercf")
    without = {k: v for k, v in eercf.items() if k != "frame_logit_weight"}
    assert "missing frame_logit_weight" in refused(tmp_path, without, "eercf")
    assert "import it as the eercf format" in refused(tmp_path, eercf, "clip4clip")  # the wrong format
    extra = dict(released_state("seqTransf"), **{"transformerClip.resblocks.0.attn.bias_k": torch.zeros(1)})
    assert "unknown transformerClip.resblocks.0.attn.bias_k" in refused(tmp_path, extra)
    lstm = dict(released_tower(), **{"lstm_visual.weight_ih_l0": torch.zeros(4, 4)})
    assert "seqLSTM" in refused(tmp_path, lstm)
    no_tower = {k: v for k, v in eercf.items() if not k.startswith("clip.")}
    assert "no CLIP ViT tower" in refused(tmp_path, no_tower, "eercf")
    assert "not a ViT-B-16 checkpoint: its patch_size is 8, ViT-B-16 has 16" in refused(tmp_path, eercf, "eercf", "ViT-B-16")
    assert "no known architecture" in refused(tmp_path, eercf, "eercf", None)
    short = {k: v for k, v in released_tower().items() if k != "clip.ln_final.bias"}
    assert "missing clip.ln_final.bias" in refused(tmp_path, short)
    assert "not a state dict of tensors" in refused(tmp_path, {"epoch": 3, "loss": 0.5})


def test_known_extras_are_listed_and_ignored(tmp_path, tiny_arch):
    from vtr_core.methods.released import import_checkpoint

    state = {**released_tower(), "clip.input_resolution": torch.tensor(32), "clip.context_length": torch.tensor(77)}
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "ddp.bin")  # saved from DDP, unwrapped
    report = import_checkpoint(tmp_path / "ddp.bin", "clip4clip", tmp_path / "out", arch="tinyimp")
    assert report.ignored == ["clip.input_resolution", "clip.context_length"] and report.variant == "meanP"


class Payload:
    def __reduce__(self):
        return (exec, ("open('PAYLOAD_RAN', 'w').write('x')",))


def test_the_command_names_its_flags_in_errors(tmp_path, tiny_arch):
    """A fresh process knows only open_clip's own architectures: the tiny tower is none of them."""
    torch.save(released_state("eercf"), tmp_path / "eercf.bin")
    done = run_import(str(tmp_path / "eercf.bin"), "--format", "eercf", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.strip().endswith("name its architecture (--arch)")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_pickle_with_a_payload_is_refused_and_never_runs(tmp_path):
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps({"clip.logit_scale": Payload()}))
    done = run_import(str(path), "--format", "eercf", "--out", str(tmp_path / "out"))
    assert done.returncode != 0 and not (REPO / "PAYLOAD_RAN").exists() and not (tmp_path / "PAYLOAD_RAN").exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a loadable state dict of plain tensors" in lines[0]
    assert not (tmp_path / "out").exists()


def test_heads_trained_on_clip_start_their_temporal_encoder_from_clip_text_layers(tmp_path, tiny_arch, lite_backbone):
    """CLIP4Clip's start: the text position table and first text blocks, in the released form; a
    zero-shot head (and every lite head) keeps the zero start, so it stays its parameter-free form."""
    import open_clip

    from vtr_core.backbones import create_backbone
    from vtr_core.methods import create_head

    torch.save({"state_dict": open_clip.create_model("tinyimp").state_dict()}, tmp_path / "tiny.pt")
    backbone = create_backbone(f"clip:tinyimp/{tmp_path / 'tiny.pt'}", "cpu")
    text = backbone.model.state_dict()
    for name in ("eercf", "s3ma", "camoe"):
        head = create_head(name, backbone, num_frames=FRAMES, for_training=True, temporal_layers=2)
        assert head.config.temporal_form == "residual" and head.config.temporal_norm_eps == 1e-12
        assert head.config.temporal_heads == HEADS and head.config.temporal_activation == "quick_gelu"
        ours = head.state_dict()
        assert torch.equal(ours["temporal.position"], text["positional_embedding"])
        for i in range(2):
            assert torch.equal(ours[f"temporal.encoder.layers.{i}.self_attn.in_proj_weight"],
                               text[f"transformer.resblocks.{i}.attn.in_proj_weight"])
            assert torch.equal(ours[f"temporal.encoder.layers.{i}.linear2.bias"], text[f"transformer.resblocks.{i}.mlp.c_proj.bias"])
        # the forward is CLIP4Clip's seqTransf over those blocks (written out above)
        frames = torch.randn(2, FRAMES, WIDTH)
        released = {"frame_position_embeddings.weight": text["positional_embedding"],
                    **{k.replace("transformer.", "transformerClip.", 1): v for k, v in text.items()
                       if k.startswith("transformer.resblocks.")}}
        assert (head.temporal(frames) - seq_transf(released, frames)).abs().max() <= 1e-4
    seq = create_head("meanp", backbone, for_training=True, sequence_encoder=True, temporal_layers=1)
    assert seq.config.temporal_form == "residual"
    assert create_head("meanp", backbone, for_training=True).config.temporal_form == "zero-output"  # no encoder
    zero_shot = create_head("eercf", backbone, num_frames=FRAMES, temporal_layers=1)
    frames = torch.randn(2, FRAMES, WIDTH)
    assert zero_shot.config.temporal_form == "zero-output" and torch.equal(zero_shot.temporal(frames), frames)
    lite = create_head("eercf", lite_backbone, for_training=True, temporal_layers=1)
    assert lite.config.temporal_form == "zero-output"


def test_an_index_built_with_the_imported_backbone_searches_with_the_imported_head(tmp_path, tiny_arch):
    """Index real (generated) videos with the imported towers; the explorer, as the app runs it,
    starts from the imported eercf head and ranks with its two-stage search."""
    from tests.conftest import write_video
    from vtr_core.explorer.service import Explorer
    from vtr_core.indexing.indexer import index_folder

    _, report, backbone, head = imported(tmp_path, "eercf", tiny_arch)
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}.mp4", num_frames=20, seed=i)
    built = index_folder(videos, tmp_path / "index", backbone, num_frames=FRAMES)
    assert len(built.added) == 3 and not built.failed
    explorer = Explorer(tmp_path / "index", device="cpu")
    assert explorer.backbone.id == report.backbone_id and explorer.queries.default_method == "eercf"
    result = explorer.queries.text_to_video("a bar moves over a coloured ground", method="eercf", top_k=3)
    assert result.head_source == report.head_path and result.rerank_depth == 50
    assert sorted(hit.video_id for hit in result.hits) == ["v0", "v1", "v2"]
    assert all(hit.reranked for hit in result.hits)
    # the ranking is the imported head's own: its full scores of the same frames, in order
    from vtr_core.video import read_video

    clips = [read_video(videos / f"v{i}.mp4", num_frames=FRAMES).frames for i in range(3)]
    encoded = backbone.encode_frames(np.concatenate(clips))
    states = head.video_state(encoded.frame.view(3, FRAMES, -1), encoded.patches.view(3, FRAMES, -1, WIDTH))
    expected = head.similarity(head.text_state(backbone.encode_text([result.query])), states)[0]
    assert [hit.video_id for hit in result.hits] == [f"v{int(i)}" for i in expected.argsort(descending=True)]
    assert [hit.score for hit in result.hits] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=2e-3)


def test_the_command_reads_a_vit_b_32_off_its_weights(tmp_path):
    """The real layout at full size (random weights): the architecture is found from the shapes and
    built with QuickGELU, as OpenAI's towers need."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-quickgelu")
    torch.save({"clip." + k: v.half() if v.dim() >= 2 and "embedding" not in k else v
                for k, v in model.state_dict().items()}, tmp_path / "pytorch_model.bin.0")
    done = run_import(str(tmp_path / "pytorch_model.bin.0"), "--format", "clip4clip", "--out", str(tmp_path / "c4c"))
    assert done.returncode == 0, done.stderr
    spec = f"clip:ViT-B-32-quickgelu/{(tmp_path / 'c4c' / 'backbone.pt').resolve()}"
    assert f"backbone  {spec}" in done.stdout and "(clip4clip format, meanP head): 302 CLIP tower keys" in done.stdout
    assert "No pretrained weights" not in done.stderr
    record = json.loads((tmp_path / "c4c" / "import.json").read_text())
    assert record["backbone_spec"] == spec and record["method"] == "meanp" and record["variant"] == "meanP"
    saved = torch.load(tmp_path / "c4c" / "backbone.pt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float32 for v in saved.values()) and len(saved) == 302
    assert torch.equal(saved["visual.conv1.weight"], model.state_dict()["visual.conv1.weight"].half().float())


def test_eval_runs_the_imported_head(tmp_path, tiny_arch):
    """`eval --checkpoint DIR/head.pt` with the imported backbone: the head's two-stage protocol
    (k = 50) over a small captioned folder at eval's 12 frames, and the recall a ranking by hand gives."""
    from tests.conftest import write_video
    from vtr_core.cli import main

    _, report, backbone, head = imported(tmp_path, "eercf", tiny_arch, frames=12)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        write_video(data / f"v{i}.mp4", num_frames=20, seed=i)
    captions = ["a red bar moves", "a green field", "a blue sky"]
    (data / "captions.jsonl").write_text("".join(json.dumps({"video_id": f"v{i}", "captions": [c]}) + "\n"
                                                 for i, c in enumerate(captions)))
    out = tmp_path / "eval.json"
    assert main(["eval", "--method", "eercf", "--backbone", report.backbone_spec, "--checkpoint", report.head_path,
                 "--data-dir", str(data), "--split", "all", "--cache", str(tmp_path / "cache"),
                 "--device", "cpu", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["head"] == report.head_path and record["rerank_top_k"] == 50
    from vtr_core.video import read_video

    encoded = backbone.encode_frames(np.concatenate([read_video(data / f"v{i}.mp4", num_frames=12).frames
                                                     for i in range(3)]))
    scores = head.similarity(head.text_state(backbone.encode_text(captions)),
                             head.video_state(encoded.frame.view(3, 12, -1), encoded.patches.view(3, 12, -1, WIDTH)))
    hits = float((scores.argmax(1) == torch.arange(3)).float().mean() * 100)
    assert record["t2v"]["R@1"] == pytest.approx(hits)
