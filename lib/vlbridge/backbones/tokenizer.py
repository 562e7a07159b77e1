"""A word-level tokenizer for microworld text, trained with `tokenizers` and wrapped as a standard
transformers tokenizer, so the stand-in backbones save and load like any Hugging Face model.

A byte-level BPE asked for 1,000 tokens stops at one token per word on this closed vocabulary
(FINDINGS.md): a word-level model is as good and simpler.
"""
from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0..3 in this order


def train_tokenizer(texts):
    """A PreTrainedTokenizerFast over every word in `texts`; encoding adds <bos> ... <eos>."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS)))
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}", special_tokens=[(BOS, bos), (EOS, eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        model_max_length=1024, clean_up_tokenization_spaces=False,
    )


def fast_token_ids(tokenizer, texts: list[str], length: int):
    """[N, length] int64 token ids, padded and truncated (special tokens kept), through the Rust
    tokenizer directly: the transformers wrapper costs about twice as much per batch
    (benchmarks/tokenize.py), which adds up in loops that tokenize every step (CLIP pretraining,
    RL rewards)."""
    import torch

    backend = tokenizer.backend_tokenizer
    backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token, length=length)
    backend.enable_truncation(length)
    try:
        return torch.tensor([e.ids for e in backend.encode_batch(texts)], dtype=torch.long)
    finally:
        backend.no_padding()
        backend.no_truncation()
