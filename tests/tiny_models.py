"""Tiny random-init models of the real families, saved locally in the real formats, so the loading
paths for real checkpoints (facebook/opt-*, gpt2, open_clip ViTs) are tested without any download;
and a small COCO Karpathy split file (dataset_coco.json) over rendered microworld scenes."""
from __future__ import annotations

import json
from pathlib import Path


def _trained_byte_level(texts, vocab_size: int, specials: list[str]):
    """GPT-2's byte-level BPE (every byte in the alphabet, no prefix space) trained on `texts`,
    with `specials` as the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tokenizer


def byte_level_bpe(texts, vocab_size: int = 400):
    """A byte-level BPE trained on `texts`, wrapped like OPT's tokenizer: GPT-2's byte-level BPE with
    <s>, <pad>, </s>, <unk> as ids 0-3, </s> as both bos and eos, and </s> prepended to every text."""
    from tokenizers import processors
    from transformers import GPT2TokenizerFast

    tokenizer = _trained_byte_level(texts, vocab_size, ["<s>", "<pad>", "</s>", "<unk>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A $B", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))])
    return GPT2TokenizerFast(tokenizer_object=tokenizer, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                             unk_token="<unk>", add_prefix_space=False)


def gpt2_bpe(texts, vocab_size: int = 400):
    """A byte-level BPE trained on `texts`, wrapped like GPT-2's tokenizer: one special token,
    <|endoftext|>, as bos, eos and unk; no pad token; nothing added to a text."""
    from transformers import GPT2TokenizerFast

    tokenizer = _trained_byte_level(texts, vocab_size, ["<|endoftext|>"])
    return GPT2TokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                             unk_token="<|endoftext|>", add_prefix_space=False)


def tiny_gpt2(tokenizer, hidden_size: int = 16, layers: int = 1, heads: int = 2, positions: int = 64, seed: int = 0):
    """A random-init GPT2LMHeadModel (the gpt2 architecture: learned absolute positions, tied
    embeddings, no pad token in its config) over `tokenizer`'s vocabulary."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_embd=hidden_size, n_layer=layers, n_head=heads, n_positions=positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))


def tiny_opt(tokenizer, hidden_size: int = 16, layers: int = 1, heads: int = 2, positions: int = 64):
    """A random-init OPTForCausalLM (the facebook/opt-* architecture) over `tokenizer`'s vocabulary."""
    from transformers import OPTConfig, OPTForCausalLM

    return OPTForCausalLM(OPTConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers, ffn_dim=2 * hidden_size,
        num_attention_heads=heads, word_embed_proj_dim=hidden_size, max_position_embeddings=positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))


def tiny_gptj(tokenizer, hidden_size: int = 32, layers: int = 1, heads: int = 2, positions: int = 128):
    """A random-init GPTJForCausalLM (the EleutherAI/gpt-j-6b architecture: rotary positions on part of
    each head, parallel attention and MLP) over `tokenizer`'s vocabulary (GPT-J uses GPT-2's)."""
    import torch
    from transformers import GPTJConfig, GPTJForCausalLM

    torch.manual_seed(0)
    return GPTJForCausalLM(GPTJConfig(
        vocab_size=len(tokenizer), n_embd=hidden_size, n_layer=layers, n_head=heads, n_positions=positions,
        rotary_dim=hidden_size // heads // 2, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id))


def save_tiny_open_clip(folder, embed_dim: int = 16, image_size: int = 32, seed: int = 0,
                        resnet: bool = False) -> Path:
    """A random-init open_clip CLIP, ViT-B/L-style or (resnet=True) RN50x16-style (a ModifiedResNet
    image tower), one layer per stage, OpenAI's text vocabulary so open_clip's default tokenizer
    fits, saved as open_clip_config.json + open_clip_model.safetensors: the folder layout
    `load_open_clip` reads as 'local-dir:'."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    vision = ({"image_size": image_size, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None} if resnet else
              {"image_size": image_size, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16})
    cfg = {"embed_dim": embed_dim,
           "vision_cfg": vision,
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}, indent=2))
    return folder


def save_tiny_karpathy(folder, splits, image_size: int = 32, start: int = 0) -> Path:
    """A COCO Karpathy split file, folder/dataset_coco.json, in the real schema, over microworld scenes
    start, start+1, ... (one per entry of `splits`; the scene seed is the cocoid), with five captions
    each and the rendered images as JPEGs where COCO keeps them: folder/images/train2014/ for "train",
    folder/images/val2014/ for the other splits (Karpathy's val, test and restval come from val2014).
    Returns the JSON's path."""
    from vlbridge import world

    folder = Path(folder)
    entries, sentid = [], 0
    for imgid, (scene, split) in enumerate(zip(world.scenes(start, len(splits)), splits, strict=True)):
        filepath = "train2014" if split == "train" else "val2014"
        filename = f"COCO_{filepath}_{scene.seed:012d}.jpg"
        (folder / "images" / filepath).mkdir(parents=True, exist_ok=True)
        world.render(scene, image_size).save(folder / "images" / filepath / filename)
        sentences = []
        for k in range(5):
            text = world.caption(scene, world.scene_rng(scene.seed, k))
            raw = text[0].upper() + text[1:].replace(" .", ".") + (" " if k % 2 else "")  # as real raw text is
            tokens = raw.lower().replace(".", " ").split()
            sentences.append({"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sentid + k})
        entries.append({"filepath": filepath, "sentids": [s["sentid"] for s in sentences], "filename": filename,
                        "imgid": imgid, "split": split, "sentences": sentences, "cocoid": scene.seed})
        sentid += len(sentences)
    path = folder / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return path


def paper_profile(name: str) -> dict:
    """params/<name>.yaml as written (not merged with a chapter's defaults)."""
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "params" / f"{name}.yaml").read_text())


def backbone_weights(lm, clip) -> dict:
    """Every frozen weight of both backbones by name, to check that training left them untouched."""
    return {f"{tower}.{k}": v for tower, model in (("lm", lm.model), ("clip", clip.model))
            for k, v in model.state_dict().items()}


def save_tiny_hf_clip(folder, family: str = "clip", image_size: int = 32, patch_size: int = 8,
                      hidden_size: int = 32, projection_dim: int = 16, seed: int = 0) -> Path:
    """A random-init transformers CLIPModel (family="clip") or SiglipModel ("siglip"), one layer per
    tower, saved with save_pretrained beside a tokenizer and an image processor that AutoTokenizer and
    AutoImageProcessor load from the folder: the layout of openai/clip-vit-* or google/siglip-*.
    The tokenizer is a byte-level BPE over microworld captions, ending each text as the family's does
    (CLIP: <|startoftext|> text <|endoftext|>, padded with <|endoftext|>; SigLIP: text </s>, padded
    with </s>); the model's config names its ids."""
    import torch
    from tokenizers import processors
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        PreTrainedTokenizerFast,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    from vlbridge import world

    texts = [world.caption(s, world.scene_rng(s.seed, 0)) for s in world.scenes(0, 200)]
    bos, eos = ("<|startoftext|>", "<|endoftext|>") if family == "clip" else (None, "</s>")
    # eos first: CLIPTextTransformer treats eos_token_id == 2 as an old config and pools at argmax(ids).
    bpe = _trained_byte_level(texts, 300, [t for t in (eos, bos, "<unk>") if t])
    single = f"{bos} $A {eos}" if bos else f"$A {eos}"
    bpe.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(t, bpe.token_to_id(t)) for t in (bos, eos) if t])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=bos, eos_token=eos, pad_token=eos,
                                        unk_token="<unk>")
    ids = {"bos_token_id": bpe.token_to_id(bos) if bos else None, "eos_token_id": bpe.token_to_id(eos),
           "pad_token_id": bpe.token_to_id(eos)}
    text = {"vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32, **ids}
    vision = {"image_size": image_size, "patch_size": patch_size, "hidden_size": hidden_size,
              "intermediate_size": 2 * hidden_size, "num_hidden_layers": 1, "num_attention_heads": 2}
    torch.manual_seed(seed)
    if family == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim))
        processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                       crop_size={"height": image_size, "width": image_size})
    else:  # SigLIP embeds at the towers' width: no projection_dim
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------- foreign LM layouts
# Tiny random-init LMs of architectures no stand-in uses, each with a tokenizer shaped like its
# family's and a small vocabulary, so words split into several tokens and a microworld dialogue
# runs past a 256-position context (tests/test_foreign_lms.py, tools/foreign_lms.py).
FOREIGN_LMS = ("falcon", "mistral", "phi", "gpt_neo")


def microworld_texts(n: int = 2000) -> list[str]:
    """Microworld text of every kind the LM corpus has (captions, styles, stories, dialogues, VQA),
    to train tokenizers on: every character the chapters write is in it."""
    from vlbridge.backbones.corpus import DOCUMENT_KINDS, lm_documents

    return lm_documents(0, n, {kind: 1.0 for kind in DOCUMENT_KINDS}, 0)


def falcon_bpe(texts, vocab_size: int = 300):
    """Byte-level BPE wrapped like tiiuae/falcon-*'s tokenizer: <|endoftext|> is its only special
    token, the eos; no bos and no pad token; nothing added to a text."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = _trained_byte_level(texts, vocab_size, ["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")


def sentencepiece_bpe(texts, vocab_size: int = 300):
    """A BPE over "▁"-marked words wrapped like Llama's and Mistral's tokenizers: <unk>, <s>, </s> as
    ids 0-2, <s> prepended to every text, no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"]))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", bpe.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _ids(tokenizer) -> dict:
    return {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


def tiny_falcon(tokenizer, hidden_size: int = 32, layers: int = 2, heads: int = 4, positions: int = 256):
    """A random-init FalconForCausalLM (falcon-7b's layout: rotary positions, multi-query attention,
    parallel attention and MLP); its config's bos is the eos, as falcon-7b's is."""
    from transformers import FalconConfig, FalconForCausalLM

    ids = _ids(tokenizer) | {"bos_token_id": tokenizer.eos_token_id}
    return FalconForCausalLM(FalconConfig(
        hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=heads, multi_query=True,
        parallel_attn=True, max_position_embeddings=positions, **ids))


def tiny_mistral(tokenizer, hidden_size: int = 32, layers: int = 2, heads: int = 4, positions: int = 256):
    """A random-init MistralForCausalLM (rotary positions, grouped-query attention, a sliding window
    shorter than the context)."""
    from transformers import MistralConfig, MistralForCausalLM

    return MistralForCausalLM(MistralConfig(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=2, head_dim=hidden_size // heads,
        max_position_embeddings=positions, sliding_window=positions // 2, **_ids(tokenizer)))


def tiny_phi(tokenizer, hidden_size: int = 32, layers: int = 2, heads: int = 4, positions: int = 256):
    """A random-init PhiForCausalLM (microsoft/phi-2's layout: rotary positions on part of each head,
    parallel attention and MLP, untied output head)."""
    from transformers import PhiConfig, PhiForCausalLM

    return PhiForCausalLM(PhiConfig(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
        num_attention_heads=heads, partial_rotary_factor=0.5, max_position_embeddings=positions,
        **_ids(tokenizer)))


def tiny_gpt_neo(tokenizer, hidden_size: int = 32, layers: int = 2, heads: int = 4, positions: int = 256):
    """A random-init GPTNeoForCausalLM (EleutherAI/gpt-neo's layout: learned absolute positions, so a
    position past the context is an IndexError; global and local attention layers alternating)."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    return GPTNeoForCausalLM(GPTNeoConfig(
        hidden_size=hidden_size, num_layers=layers, num_heads=heads,
        attention_types=[[["global", "local"], layers // 2]], window_size=64, max_position_embeddings=positions,
        **_ids(tokenizer)))


def save_foreign_lm(folder, arch: str, seed: int = 0, texts: list[str] | None = None) -> Path:
    """A tiny random-init LM of `arch` (one of FOREIGN_LMS) and its tokenizer, saved with
    save_pretrained into `folder`: a folder `load_lm` (and `--set lm_model=FOLDER`) takes."""
    import torch

    texts = texts or microworld_texts()
    # Vocabularies small enough that microworld words split into pieces (the microworld has ~100
    # words: a bigger BPE learns them whole): 256 bytes + 44 merges; 64 "▁"-pieces.
    tokenizers = {"falcon": lambda t: falcon_bpe(t, 300), "mistral": lambda t: sentencepiece_bpe(t, 64),
                  "phi": lambda t: gpt2_bpe(t, 300), "gpt_neo": lambda t: gpt2_bpe(t, 300)}
    models = {"falcon": tiny_falcon, "mistral": tiny_mistral, "phi": tiny_phi, "gpt_neo": tiny_gpt_neo}
    if arch not in models:
        raise ValueError(f"arch must be one of {', '.join(FOREIGN_LMS)}, got {arch!r}")
    tokenizer = tokenizers[arch](texts)
    torch.manual_seed(seed)
    folder = Path(folder)
    models[arch](tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
