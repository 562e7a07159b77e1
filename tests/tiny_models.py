"""Tiny random-init models of the real families, saved locally in the real formats, so the loading
paths for real checkpoints (facebook/opt-*, open_clip ViTs) are tested without any download."""
from __future__ import annotations

import json
from pathlib import Path


def byte_level_bpe(texts, vocab_size: int = 400):
    """A byte-level BPE trained on `texts`, wrapped like OPT's tokenizer: GPT-2's byte-level BPE with
    <s>, <pad>, </s>, <unk> as ids 0-3, </s> as both bos and eos, and </s> prepended to every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A $B", special_tokens=[("</s>", tokenizer.token_to_id("</s>"))])
    return GPT2TokenizerFast(tokenizer_object=tokenizer, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                             unk_token="<unk>", add_prefix_space=False)


def tiny_opt(tokenizer, hidden_size: int = 16, layers: int = 1, heads: int = 2, positions: int = 64):
    """A random-init OPTForCausalLM (the facebook/opt-* architecture) over `tokenizer`'s vocabulary."""
    from transformers import OPTConfig, OPTForCausalLM

    return OPTForCausalLM(OPTConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers, ffn_dim=2 * hidden_size,
        num_attention_heads=heads, word_embed_proj_dim=hidden_size, max_position_embeddings=positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))


def save_tiny_open_clip(folder, embed_dim: int = 16, image_size: int = 32, seed: int = 0) -> Path:
    """A random-init open_clip ViT-B/L-style CLIP (one layer per tower, OpenAI's text vocabulary so
    open_clip's default tokenizer fits) saved as open_clip_config.json + open_clip_model.safetensors:
    the folder layout `load_open_clip` reads as 'local-dir:'."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg = {"embed_dim": embed_dim,
           "vision_cfg": {"image_size": image_size, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}, indent=2))
    return folder
