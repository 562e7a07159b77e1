"""CLIP: any open_clip model by name or local folder, and the microworld's tiny stand-in,
pretrained here contrastively on rendered scenes and their captions, then saved as a standard
open_clip folder (open_clip_config.json + open_clip_model.safetensors + tokenizer) and loaded
back through open_clip's own `local-dir:` path."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..repro import generator, numpy_rng
from ..training import adamw, train_loop
from ..world import COLOUR_NAMES, SHAPES, SIZES, render_array, scenes
from .corpus import clip_text
from .freeze import freeze
from .lm import BackboneNotFoundError
from .tokenizer import fast_token_ids

MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation, kept for familiarity
STD = (0.26862954, 0.26130258, 0.27577711)


def _pixel_array_problem(shape: tuple, is_float: bool, is_uint8: bool) -> str:
    """What is wrong with an image batch of this shape and dtype ('' if nothing), and how to fix it."""
    if len(shape) == 3 and shape[-1] in (1, 3, 4):
        return "a single image? add the batch dimension: images[None]"
    if len(shape) != 4:
        return f"{len(shape)} dimensions, not 4"
    if shape[0] == 0:
        return "no images"
    if shape[-1] != 3:
        hints = {4: "RGBA? drop (or composite) the alpha channel: images[..., :3]",
                 1: "greyscale? repeat it to 3 channels"}
        channels_first = shape[1] == 3 and "channels first? move them last: images.permute(0, 2, 3, 1)"
        return hints.get(shape[-1]) or channels_first or f"{shape[-1]} channels, not 3"
    if shape[1] != shape[2]:
        return "not square: crop the images, or pass PIL images, which CLIP's preprocess resizes and centre-crops"
    if is_float:
        return "floats? values in [0, 1] become uint8 with (images * 255).round()"
    if not is_uint8:
        return "values must be uint8 0-255"
    return ""


def normalise_pixels(images, size: int, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 [N, H, W, 3] (RGB, channels last; array or tensor) -> float [N, 3, size, size], normalised.
    Square images of another size are resized (bicubic) to size x size; anything else — another dtype,
    another number of channels, non-square images, a missing batch dimension, no images — is a
    ValueError that says what was expected and what was given."""
    if isinstance(images, torch.Tensor):
        x = images.detach().cpu()
        is_float, is_uint8 = x.is_floating_point(), x.dtype == torch.uint8
    else:
        x = np.asarray(images)
        is_float, is_uint8 = np.issubdtype(x.dtype, np.floating), x.dtype == np.uint8
    problem = _pixel_array_problem(tuple(x.shape), is_float, is_uint8)
    if problem:
        raise ValueError(f"images must be uint8 [N, H, W, 3] with H == W (resized to {size}x{size}), got "
                         f"{type(images).__name__} {x.dtype} {list(x.shape)}: {problem}")
    x = torch.as_tensor(x).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x - torch.as_tensor(mean).view(1, 3, 1, 1)) / torch.as_tensor(std).view(1, 3, 1, 1)


def check_texts(texts, who: str = "encode_texts") -> None:
    """The input checks of every CLIP's encode_texts: a non-empty list of non-blank str."""
    if isinstance(texts, str):
        raise ValueError(f"{who} takes a list of texts, got one str ({texts[:40]!r}); wrap it: [text]")
    if not texts:
        raise ValueError(f"{who} got no texts")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{who}: texts[{i}] is {type(text).__name__}, not str")
        if not text.strip():
            raise ValueError(f"{who}: texts[{i}] is empty ({text!r}); CLIP has nothing to embed")


class FrozenCLIP:
    """A frozen open_clip model with batched, L2-normalised image and text embeddings."""

    def __init__(self, name: str, model, tokenizer, preprocess):
        self.name = name
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.preprocess = preprocess  # PIL -> tensor, for real photographs
        cfg = getattr(model.visual, "preprocess_cfg", {})
        self.mean, self.std = cfg.get("mean", MEAN), cfg.get("std", STD)
        size = model.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else size

    @property
    def embed_dim(self) -> int:
        return self.model.visual.output_dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def pixels(self, images) -> torch.Tensor:
        """uint8 images [N, H, W, 3] (array or tensor; square, resized to the model's image_size if
        another size: see normalise_pixels) or a list of RGB PIL images (any size: CLIP's preprocess
        resizes and centre-crops them) -> normalised [N, 3, S, S]. Anything else is a ValueError: other
        PIL modes ("L", "RGBA": convert('RGB') first), other dtypes or channels, no images."""
        if isinstance(images, (list, tuple)):
            from PIL import Image

            if not images:
                raise ValueError("pixels got no images (an empty list)")
            for i, im in enumerate(images):
                if not isinstance(im, Image.Image):
                    raise ValueError(f"a list of images must hold PIL images, but item {i} is {type(im).__name__}; "
                                     "stack arrays into one uint8 [N, H, W, 3] array instead")
                if im.mode != "RGB":
                    raise ValueError(f"PIL images must be RGB, but image {i} has mode {im.mode!r}: "
                                     "use image.convert('RGB')")
            return torch.stack([self.preprocess(im) for im in images])
        return normalise_pixels(images, self.image_size, self.mean, self.std)

    def _pixel_dtype(self) -> torch.dtype:
        """The vision tower's input dtype."""
        stem = getattr(self.model.visual, "conv1", None)  # open_clip's ViTs and ResNets; timm towers are uniform
        return (stem.weight if stem is not None else next(self.model.visual.parameters())).dtype

    def _batches(self, images, batch_size: int):
        """Normalised pixel batches on the model's device, in the vision tower's dtype."""
        if len(images) == 0:
            raise ValueError("got no images to encode")
        dtype = self._pixel_dtype()
        for i in range(0, len(images), batch_size):
            yield self.pixels(images[i:i + batch_size]).to(self.device, dtype)

    @torch.no_grad()
    def encode_images(self, images, batch_size: int = 512) -> torch.Tensor:
        """[N, embed_dim] float32 on CPU, whatever the model's precision."""
        out = [self.model.encode_image(x, normalize=True) for x in self._batches(images, batch_size)]
        return torch.cat(out).float().cpu()

    @torch.no_grad()
    def encode_images_and_patches(self, images, min_grid: int = 4,
                                  batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """In one pass of the vision tower: the embeddings [N, embed_dim] (as encode_images gives them)
        and the patch tokens [N, P, C], each L2-normalised, float32 on CPU. The patch tokens are the
        last feature map with at least min_grid x min_grid cells, row-major: for a ViT its final patch
        grid; for a ResNet, whose last stage is 1x1 on small images (where "where" is gone), an
        earlier stage's map."""
        embeddings, patches = [], []
        for x in self._batches(images, batch_size):
            out = self.model.visual.forward_intermediates(x)
            maps = out["image_intermediates"]
            spatial = [m for m in maps if min(m.shape[-2:]) >= min_grid]
            if not spatial:
                sizes = ", ".join(f"{m.shape[-2]}x{m.shape[-1]}" for m in maps)
                raise ValueError(f"{self.name}: no feature map has {min_grid}x{min_grid} cells (maps: {sizes})")
            embeddings.append(F.normalize(out["image_features"], dim=-1).float().cpu())
            patches.append(F.normalize(spatial[-1].flatten(2).transpose(1, 2).float(), dim=-1).cpu())
        return torch.cat(embeddings), torch.cat(patches)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        inner = getattr(self.tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a transformers one
        if getattr(inner, "is_fast", False) and getattr(self.tokenizer, "tokenizer_mode", "") == "":
            return fast_token_ids(inner, [self.tokenizer.clean_fn(t) for t in texts], self.tokenizer.context_length)
        return self.tokenizer(texts)

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 512) -> torch.Tensor:
        check_texts(texts)
        out = [self.model.encode_text(self.tokenize(texts[i:i + batch_size]).to(self.device), normalize=True)
               for i in range(0, len(texts), batch_size)]
        return torch.cat(out).float().cpu()


@contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(level)


def load_open_clip(name: str, device: str = "cpu", precision: str = "fp32") -> FrozenCLIP:
    """'local-dir:/folder', a folder path, 'hf-hub:org/repo', or 'ARCH/TAG' such as 'ViT-L-14/openai'.
    Nothing is downloaded: a checkpoint missing here is an error that says how to get it."""
    import open_clip

    folder = Path(name).expanduser()
    if folder.is_dir():
        name = f"local-dir:{folder}"
    arch, _, tag = name.partition("/") if not name.startswith(("local-dir:", "hf-hub:")) else (name, "", "")
    try:
        with _quiet_root_logger():  # open_clip logs its own failure before raising; ours says more
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=tag or None, device=device, precision=precision)
            tokenizer = open_clip.get_tokenizer(arch)
    except (RuntimeError, FileNotFoundError, OSError, ValueError) as e:
        raise BackboneNotFoundError(
            f"CLIP model {name!r} is not available offline ({str(e)[:200]}). On a machine with network, "
            f"`python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag or 'openai'}')\"` "
            "fills the Hugging Face cache (~/.cache/huggingface): copy that cache here. Or put the model's "
            "open_clip_config.json and open_clip_model.safetensors in a folder and set clip_model: "
            "local-dir:/that/folder. Names with weights: open_clip.list_pretrained()."
        ) from None
    return FrozenCLIP(name, model, tokenizer, preprocess)


# ------------------------------------------------------------------------------ the stand-in


def _scene_table(batch) -> np.ndarray:
    """Scenes as int codes [N, 3, 5]: (shape, colour, size, row, col), -9 where no object."""
    table = np.full((len(batch), 3, 5), -9, dtype=np.int64)
    for i, scene in enumerate(batch):
        for j, o in enumerate(scene.objects):
            table[i, j] = (SHAPES.index(o.shape), COLOUR_NAMES.index(o.colour), SIZES.index(o.size), o.row, o.col)
    return table


def _claim_table(claims_per_text) -> np.ndarray:
    """Claims as int codes [T, 3, 5]; -1 = attribute not stated, -8 = no claim in that slot."""
    table = np.full((len(claims_per_text), 3, 5), -8, dtype=np.int64)
    for i, claims in enumerate(claims_per_text):
        for j, c in enumerate(claims or ()):
            table[i, j] = (SHAPES.index(c.shape),
                           -1 if c.colour is None else COLOUR_NAMES.index(c.colour),
                           -1 if c.size is None else SIZES.index(c.size),
                           -1 if c.row is None else c.row, -1 if c.col is None else c.col)
    return table


def true_of(texts_meta, batch) -> torch.Tensor:
    """[T, N] bool: is text t true of scene n? An exhaustive text (a full caption) is true of scenes
    with exactly its objects; a partial one of every scene where each of its claims holds."""
    keys = [s.keys for s in batch]
    key_ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    scene_key = np.array([key_ids[k] for k in keys])
    exhaustive = np.array([m[1] for m in texts_meta])
    same_scene = scene_key[[m[2] for m in texts_meta]][:, None] == scene_key[None, :]
    claims, objects = _claim_table([m[0] for m in texts_meta]), _scene_table(batch)
    # attribute agrees: [T, N, claim, object, attribute]
    agree = (claims[:, None, :, None, :] == -1) | (claims[:, None, :, None, :] == objects[None, :, None, :, :])
    holds = agree.all(-1).any(-1) | (claims[:, None, :, 0] == -8)  # each claim holds for some object
    partial_true = holds.all(-1)
    return torch.from_numpy(np.where(exhaustive[:, None], same_scene, partial_true))


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets / targets.sum(-1, keepdim=True)
    return -(targets * logits.log_softmax(-1)).sum(-1).mean()


def micro_clip_config(recipe: dict, tokenizer) -> dict:
    model = json.loads(json.dumps(recipe["model"]))
    model["text_cfg"].update(vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
                             pool_type="eos", hf_tokenizer_name="vlbridge-microworld-words")
    return model


def pretrain_micro_clip(recipe: dict, tokenizer, out_dir: Path, device: str = "cpu") -> None:
    """Contrastive pretraining on rendered scenes and texts about them; saved in open_clip's format."""
    import open_clip
    from safetensors.torch import save_file

    train = recipe["train"]
    torch.manual_seed(train["seed"])
    model_cfg = micro_clip_config(recipe, tokenizer)
    model = open_clip.CLIP(**model_cfg).to(device)
    size = model_cfg["vision_cfg"]["image_size"]
    pool = scenes(0, train["scenes"])
    pixels = normalise_pixels(render_array(pool, size), size).to(device)
    order = generator(train["seed"], "clip-pretrain-batches")
    context = model_cfg["text_cfg"]["context_length"]

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randperm(len(pool), generator=order)[: train["batch_size"]]
        batch = [pool[i] for i in idx.tolist()]
        rng = numpy_rng(train["seed"], f"clip-text-{step}")
        drawn = [clip_text(s, rng, train.get("text_mix")) for s in batch]
        tokens = fast_token_ids(tokenizer, [d[0] for d in drawn], context).to(device)
        targets = true_of([(claims, exhaustive, i) for i, (_, claims, exhaustive) in enumerate(drawn)], batch)
        targets = targets.float().to(device)
        image = model.encode_image(pixels[idx.to(device)], normalize=True)
        text = model.encode_text(tokens, normalize=True)
        logits = model.logit_scale.exp().clamp(max=100) * text @ image.T  # [texts, images]
        return 0.5 * (_soft_cross_entropy(logits, targets) + _soft_cross_entropy(logits.T, targets.T))

    optimizer = adamw(model.parameters(), train["lr"], train["weight_decay"])
    log = train_loop(model, optimizer, train["steps"], train["warmup_steps"], loss_fn, "pretrain CLIP")
    weights = {k: v.contiguous() for k, v in model.cpu().state_dict().items()}
    save_file(weights, str(out_dir / "open_clip_model.safetensors"))
    preprocess = {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    (out_dir / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, indent=2) + "\n")
    tokenizer.save_pretrained(out_dir)
    (out_dir / "training_log.json").write_text(json.dumps(log) + "\n")
