"""open_clip CLIP as a backbone: any architecture, a pretrained tag or a local checkpoint.

Spec grammar (after the `clip:` prefix):
  ARCH/TAG         a built-in architecture and a pretrained tag, e.g. `ViT-B-32/openai`
                   (downloaded on first use where there is a network, else taken from the cache)
  ARCH/PATH        a built-in architecture and a checkpoint file, e.g. `ViT-B-32//data/ckpt.pt`
  local-dir:PATH   a folder holding open_clip_config.json and the weights
Patch tokens go through the same `ln_post` and `proj` as the class token, and word tokens through
the same `ln_final` and `text_projection` as the sentence token, so all live in one space.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from vtr_core.backbones.base import (
    FrameFeatures,
    TextFeatures,
    autocast,
    concat_text_features,
    frames_to_tensor,
)
from vtr_core.contracts import clean_queries
from vtr_core.errors import BackboneError
from vtr_core.storage import file_sha256, load_failure

DEFAULT_CLIP = "ViT-B-32/openai"
TEXT_BATCH = 256
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def parse_clip_spec(body: str) -> tuple[str, str | None]:
    """`ARCH/TAG_OR_PATH` or `local-dir:PATH` -> (model_name, pretrained)."""
    if body.startswith("local-dir:"):
        return body, None
    arch, sep, pretrained = body.partition("/")
    if not arch or not sep or not pretrained:
        raise BackboneError(f"clip backbone spec must be clip:ARCH/PRETRAINED_OR_PATH, got clip:{body}")
    return arch, pretrained


def _looks_like_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _file_digest(path: Path) -> str:
    return file_sha256(path)[:16]


def weights_fingerprint(model_name: str, pretrained: str | None) -> str:
    """A name for the weights that changes when the weights change (files are hashed)."""
    if model_name.startswith("local-dir:"):
        folder = Path(model_name[len("local-dir:") :])
        files = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".pth", ".pt", ".json"})
        return "local-dir:" + hashlib.sha256("".join(_file_digest(p) for p in files).encode()).hexdigest()[:16]
    if pretrained and os.path.isfile(pretrained):
        return f"{model_name}/sha256:{_file_digest(Path(pretrained))}"
    return f"{model_name}/{pretrained}"


def cached_weights_path(model_name: str, pretrained: str) -> str | None:
    """Where a pretrained tag's weights already sit on this machine, without touching the network."""
    import open_clip

    if os.path.isfile(pretrained):
        return pretrained
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        return None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id = cfg["hf_hub"].strip("/")
        for filename in _HF_WEIGHT_FILES:
            found = try_to_load_from_cache(repo_id, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    if cfg.get("url"):
        candidate = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if candidate.is_file():
            return str(candidate)
    return None


def check_weights_file(path: str | os.PathLike) -> None:
    """Read a local checkpoint as plain tensors before open_clip does, so a file whose pickle would
    run code is refused here whatever open_clip's own loader does (it falls back to a plain
    `torch.load` on some errors). safetensors and numpy files hold no pickles."""
    path = Path(path)
    if path.suffix in {".safetensors", ".npz", ".npy"}:
        return
    try:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: no second copy in memory
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            torch.load(path, map_location="cpu", weights_only=True)  # the legacy (pre-zip) format
    except Exception as exc:

        raise BackboneError(f"clip checkpoint {path}: not a file of plain weights ({load_failure(exc)})") from None


class ClipBackbone:
    # CLIP's frame features are already trained for the joint space; heads adapt them directly.
    raw_dim = 0
    trains_end_to_end = True  # see "fine-tuning" below: trainable, forward_pixels, save_weights

    def __init__(self, body: str, device: torch.device):
        import open_clip
        from open_clip.transformer import VisionTransformer

        model_name, pretrained = parse_clip_spec(body)
        if pretrained and _looks_like_path(pretrained) and not os.path.isfile(pretrained):
            raise BackboneError(f"clip checkpoint {pretrained}: no such file")
        if pretrained and os.path.isfile(pretrained):
            check_weights_file(pretrained)
        elif model_name.startswith("local-dir:") and os.path.isdir(model_name[len("local-dir:"):]):
            for weights in Path(model_name[len("local-dir:"):]).iterdir():
                if weights.suffix in {".bin", ".pth", ".pt"}:
                    check_weights_file(weights)
        try:
            self.model = open_clip.create_model(model_name, pretrained=pretrained, device=device,
                                                weights_only=True).eval()
            self.tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise BackboneError(f"cannot load CLIP clip:{body} ({reason})") from None
        self.spec = f"clip:{body}"
        self.model_name = model_name
        # a checkpoint file's path (an imported model's record sits beside it), else None
        self.weights_path = pretrained if pretrained and os.path.isfile(pretrained) else None
        self.id = f"clip:{weights_fingerprint(model_name, pretrained)}"
        self.frames_id = self.id  # one set of weights for both towers
        self.device = device
        with torch.no_grad():
            self.embed_dim = int(self.model.encode_text(self.tokenizer(["a"]).to(device)).shape[-1])

        visual = self.model.visual
        preprocess = open_clip.get_model_preprocess_cfg(self.model)
        size = preprocess.get("size", 224)
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.mean, self.std = tuple(preprocess["mean"]), tuple(preprocess["std"])
        self._vit = isinstance(visual, VisionTransformer) and getattr(visual, "attn_pool", None) is None
        if self._vit:
            visual.output_tokens = True
            grid = visual.grid_size
            self.patch_grid = (int(grid[0]), int(grid[1]))
        else:
            self.patch_grid = None

        text_tower = getattr(self.model, "text", self.model)
        self._ln_final = getattr(text_tower, "ln_final", None)
        self._text_projection = getattr(text_tower, "text_projection", None)
        self._captured_tokens: torch.Tensor | None = None
        if self._ln_final is not None:
            self._ln_final.register_forward_hook(self._capture_tokens)

    def _capture_tokens(self, module, inputs, output) -> None:
        if output.dim() == 3:
            self._captured_tokens = output

    def _project_words(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._text_projection is None:
            return tokens
        if isinstance(self._text_projection, torch.nn.Module):
            return self._text_projection(tokens)
        return tokens @ self._text_projection

    def forward_pixels(self, pixels: torch.Tensor) -> FrameFeatures:
        """Normalised pixels [N, 3, S, S] -> features on the device, differentiable (fine-tuning)."""
        visual = self.model.visual
        with autocast(self.device):
            if not self._vit:
                return FrameFeatures(frame=visual(pixels).float(), patches=None)
            pooled, tokens = visual(pixels)
            if getattr(visual, "final_ln_after_pool", False):
                tokens = visual.ln_post(tokens)
            if visual.proj is not None:
                tokens = tokens @ visual.proj
        return FrameFeatures(frame=pooled.float(), patches=tokens.float())

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        return frames_to_tensor(frames, self.image_size, self.mean, self.std, self.device)

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray, patch_dtype: torch.dtype = torch.float32) -> FrameFeatures:
        features = self.forward_pixels(self.preprocess(frames))
        return FrameFeatures(features.frame.cpu(), features.patches.to(patch_dtype).cpu() if features.patches is not None else None)

    def _token_strings(self, ids: list[int]) -> list[str]:
        inner = self.tokenizer
        if hasattr(inner, "decoder"):  # open_clip's SimpleTokenizer: BPE pieces, "</w>" ends a word
            return [inner.decoder.get(i, "") for i in ids]
        hf = getattr(inner, "tokenizer", None)
        return hf.convert_ids_to_tokens(ids) if hf is not None else [str(i) for i in ids]

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> TextFeatures:
        texts = clean_queries(texts)
        if len(texts) > TEXT_BATCH:
            return concat_text_features([self.encode_text(texts[i : i + TEXT_BATCH]) for i in range(0, len(texts), TEXT_BATCH)])
        return self.forward_text(texts).to(torch.device("cpu"))

    def forward_text(self, texts: list[str]) -> TextFeatures:
        """Captions -> features on the device, differentiable (fine-tuning)."""
        texts = clean_queries(texts)
        ids = self.tokenizer(texts).to(self.device)
        self._captured_tokens = None
        with autocast(self.device):
            sentence = self.model.encode_text(ids).float()
            if self._captured_tokens is not None:
                words = self._project_words(self._captured_tokens).float()
            else:  # a tower without a token-level final norm: one token, the sentence itself
                words = sentence.unsqueeze(1)
        specials = {getattr(self.tokenizer, name, None) for name in ("sot_token_id", "eot_token_id", "pad_token_id")}
        specials |= {0}
        id_rows = ids.tolist()
        mask = torch.tensor([[i not in specials for i in row] for row in id_rows], dtype=torch.bool)
        if words.shape[1] != mask.shape[1]:
            mask = torch.ones(words.shape[:2], dtype=torch.bool)
        return TextFeatures(
            sentence=sentence,
            word_tokens=words,
            word_mask=mask.to(self.device),
            tokens=[self._token_strings(row) for row in id_rows],
            texts=texts,
        )

    def text_layers(self, count: int) -> dict[str, torch.Tensor] | None:
        """CLIP's text position table and first `count` text blocks, in OpenAI's key names
        (`positional_embedding`, `transformer.resblocks.{i}.*`): what CLIP4Clip starts its temporal
        encoder from. None where the text tower is not OpenAI's layout, has fewer blocks, or is
        narrower or wider than the joint space (the encoder runs on joint-space frame features)."""
        state = self.model.state_dict()
        names = ["positional_embedding"] + [k for k in state if k.startswith("transformer.resblocks.")
                                            and int(k.split(".")[2]) < count]
        if any(n not in state for n in names) or f"transformer.resblocks.{count - 1}.ln_1.weight" not in state:
            return None
        if state["positional_embedding"].shape[-1] != self.embed_dim:
            return None
        return {name: state[name].detach().float().cpu().clone() for name in names}

    # -- fine-tuning ---------------------------------------------------------------------------
    def trainable(self) -> torch.nn.Module:
        return self.model

    def save_weights(self, path: str | Path) -> str:
        """Write the (fine-tuned) weights; returns the spec that loads them as a backbone."""
        if self.model_name.startswith("local-dir:"):
            raise BackboneError("fine-tuned weights can be saved for clip:ARCH/... backbones, not local-dir:")
        from vtr_core.storage import atomic_torch_save

        atomic_torch_save({"state_dict": self.model.state_dict()}, path)
        return f"clip:{self.model_name}/{Path(path).resolve()}"
