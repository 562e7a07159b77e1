"""Causal LMs: any Hugging Face AutoModelForCausalLM by name or local folder, and the microworld's
small decoder-only stand-in, pretrained here on microworld text only (never on images)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..repro import generator, progress_enabled
from ..training import adamw, train_loop
from .corpus import lm_documents
from .freeze import freeze


class BackboneNotFoundError(FileNotFoundError):
    """A real checkpoint is not on this machine; the message says what to download and where."""


def not_available_offline(what: str, key: str, name_or_path: str, local: Path, error: OSError,
                          prefix: str = "") -> BackboneNotFoundError:
    """What to do when transformers cannot read `name_or_path` offline: for a local folder, which
    files it lacks (downloading it by its own path makes no sense); for a hub name, how to get it
    here. `key` is the parameter that names it (lm_model, clip_model), `prefix` what its value starts with."""
    if local.exists():
        return BackboneNotFoundError(
            f"{what} folder {local} has a config.json, but transformers could not read the model from it "
            f"({error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}). A folder "
            "made by `hf download NAME --local-dir FOLDER` holds the weights (model.safetensors, or "
            "pytorch_model.bin, or their shards with the index file) and the tokenizer files: copy the whole of it.")
    last = name_or_path.rstrip("/").split("/")[-1]
    return BackboneNotFoundError(
        f"{what} {name_or_path!r} is not available offline ({error.__class__.__name__}). On a machine with network, "
        f"download it with `hf download {name_or_path} --local-dir checkpoints/{last}`, copy that folder here and "
        f"set {key}: {prefix}checkpoints/{last} (or fill the Hugging Face cache, ~/.cache/huggingface, with the "
        "same model).")


@dataclass
class FrozenLM:
    name: str
    model: torch.nn.Module
    tokenizer: object

    @property
    def embed_dim(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    @property
    def context_length(self) -> int:
        config = self.model.config
        return getattr(config, "max_position_embeddings", None) or config.n_positions

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)


def _hide_hf_progress_bars() -> None:
    """Headless runs record no loading/saving bars as notebook output (they would differ run to run)."""
    from transformers.utils import logging as hf_logging

    if not progress_enabled():
        hf_logging.disable_progress_bar()


def load_hf_lm(name_or_path: str, dtype: torch.dtype = torch.float32) -> FrozenLM:
    """A frozen AutoModelForCausalLM and its tokenizer, from a local folder or the local HF cache
    (no download: HF_HUB_OFFLINE is set)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(name_or_path).expanduser()
    source = str(local) if local.exists() else name_or_path
    if local.exists() and not (local / "config.json").is_file():
        raise BackboneNotFoundError(f"{local} has no config.json: not a Hugging Face model folder")
    _hide_hf_progress_bars()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=dtype)
    except OSError as e:
        raise not_available_offline("language model", "lm_model", name_or_path, local, e) from None
    if tokenizer.pad_token is None:  # GPT-2 and friends have none; batching needs one
        tokenizer.pad_token = tokenizer.eos_token
    return FrozenLM(name_or_path, freeze(model), tokenizer)


def _packed_blocks(tokenizer, documents: list[str], block_size: int) -> torch.Tensor:
    """All documents as one token stream (<bos> doc <eos> <bos> doc <eos> ...) cut into blocks."""
    ids = tokenizer(documents).input_ids
    stream = np.fromiter((t for doc in ids for t in doc), dtype=np.int64)
    n = len(stream) // block_size
    return torch.from_numpy(stream[: n * block_size].reshape(n, block_size))


def micro_lm_config(recipe: dict, tokenizer):
    """A Llama-architecture config (a GPT-style decoder with rotary positions): with rotary
    positions the circuits that copy from context form within this CPU budget; with GPT-2's learned
    absolute positions they did not (measured, see chapter 2)."""
    from transformers import LlamaConfig

    d = recipe["model"]["hidden_size"]
    return LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, attention_dropout=0.0,
        intermediate_size=recipe["model"].get("intermediate_size", 2 * d),
        **{k: v for k, v in recipe["model"].items() if k != "intermediate_size"},
    )


def pretrain_micro_lm(recipe: dict, tokenizer, out_dir: Path, device: str = "cpu") -> None:
    """Train the stand-in LM on microworld text and save it as a Hugging Face model."""
    from transformers import LlamaForCausalLM

    _hide_hf_progress_bars()
    train = recipe["train"]
    torch.manual_seed(train["seed"])
    model = LlamaForCausalLM(micro_lm_config(recipe, tokenizer)).to(device)
    blocks = _packed_blocks(tokenizer, lm_documents(0, train["documents"], train["mix"], train["seed"]),
                            train["block_size"]).to(device)
    order = generator(train["seed"], "lm-pretrain-batches")

    def loss_fn(step: int) -> torch.Tensor:
        batch = blocks[torch.randint(len(blocks), (train["batch_size"],), generator=order).to(device)]
        return model(input_ids=batch, labels=batch).loss

    optimizer = adamw(model.parameters(), train["lr"], train["weight_decay"])
    log = train_loop(model, optimizer, train["steps"], train["warmup_steps"], loss_fn, "pretrain LM")
    log["tokens_per_step"] = train["batch_size"] * train["block_size"]
    log["corpus_blocks"] = len(blocks)
    model.cpu().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "training_log.json").write_text(json.dumps(log) + "\n")
