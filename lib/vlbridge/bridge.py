"""The bridge every method trains: an encoder embedding becomes k input embeddings of a frozen LM,
spliced anywhere into an interleaved sequence of text and images; and batched, KV-cached generation
from such sequences.

A sequence is a list of segments:
    Text("a caption .", learn=True)   # tokens; learn=True makes them targets of the loss
    Tokens((12, 7, 30), learn=True)   # token ids as they are (a sampled continuation)
    Embeds(vectors, tag="image")      # [n, d_lm] vectors put straight into inputs_embeds
so "image, caption, image, caption, [RET]" is one list, and the positions of every tagged segment
are returned for reading hidden states there.

An LM reads at most `lm.context_length` positions (learned position embeddings have no row past it).
A longer sequence is cut from the left: its first <bos> stays, then the most recent positions, so
what a sequence ends with (the [RET] token, the question, the last dialogue turns, the targets)
is kept. `assemble(..., exact=True)` raises instead. Generation likewise stops at the context: it
writes at most the positions left after the prompt (`exact=True`: raises when max_new_tokens does
not fit). Sequences that fit are assembled and generated exactly as before.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import SINGLE, Group

IGNORE = -100  # targets that are not predicted
# Every captioner's limit on new tokens (FROMAGe's, ClipCap's, ESPER's), so none is cut where another is
# not: the microworld's three-object captions take up to 27 of the stand-in LM's tokens (after "there is").
CAPTION_TOKENS = 32
_BOS = object()  # the LM's begin-of-sequence token, first in every assembled sequence


def long_tensor(values, device) -> torch.Tensor:
    """Integers (token ids, indices) as a long tensor on `device`, copied there without waiting: a
    blocking copy to a GPU first waits for all the work queued on it, so the host could not assemble
    the next batch while the LM runs on this one."""
    return torch.tensor(list(values), dtype=torch.long).to(device, non_blocking=True)


def lm_device(lm) -> torch.device:
    """Where a frozen LM runs; the modules trained in front of it are moved there, and what they read
    (features, which encoders return on the CPU) is moved there as it is read."""
    return lm.model.get_input_embeddings().weight.device


class Bridge(nn.Module):
    """Encoder embedding [B, d_in] -> k LM input embeddings [B, k, d_lm]: linear (FROMAGe) or a
    two-layer MLP (ClipCap, ESPER)."""

    def __init__(self, in_dim: int, lm_dim: int, tokens: int = 4, kind: str = "linear", hidden: int | None = None):
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise ValueError(f"bridge kind must be 'linear' or 'mlp', got {kind!r}")
        if tokens < 1:
            raise ValueError(f"a bridge needs at least 1 token, got {tokens}")
        self.in_dim, self.lm_dim, self.tokens, self.kind = in_dim, lm_dim, tokens, kind
        out = tokens * lm_dim
        if kind == "linear":
            self.net = nn.Linear(in_dim, out)
        else:
            hidden = hidden or out // 2
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, out))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        if embedding.ndim != 2 or embedding.shape[1] != self.in_dim:
            raise ValueError(f"bridge expects embeddings [batch, {self.in_dim}], got {tuple(embedding.shape)}")
        return self.net(embedding).view(len(embedding), self.tokens, self.lm_dim)


class ExtraTokens(nn.Module):
    """Tokens the LM never had (FROMAGe's [RET]): each has its own trainable input embedding and
    output vector, appended after the LM's vocabulary (ids V, V+1, ...). The LM's own embedding
    matrix is untouched. Input embeddings start at `input_init` (e.g. the mean of the LM's token
    embeddings, where the LM reads them like an ordinary word) plus noise."""

    def __init__(self, names: list[str], lm_dim: int, vocab_size: int, init_std: float = 0.02,
                 input_init: torch.Tensor | None = None):
        super().__init__()
        self.names, self.vocab_size = list(names), vocab_size
        # Made on the CPU (the same draws on every device), moved with the module that holds it.
        start = torch.zeros(lm_dim) if input_init is None else input_init.detach().float().cpu()
        self.input = nn.Parameter(start + torch.randn(len(names), lm_dim) * init_std)
        self.output = nn.Parameter(torch.randn(len(names), lm_dim) * init_std)
        self.bias = nn.Parameter(torch.zeros(len(names)))

    def id(self, name: str) -> int:
        return self.vocab_size + self.names.index(name)

    def embedding(self, name: str) -> torch.Tensor:
        return self.input[self.names.index(name)][None]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.output.T + self.bias


@dataclass(frozen=True)
class Text:
    text: str
    learn: bool = False
    tag: str = ""  # marks the position of the text's last token


@dataclass(frozen=True)
class Tokens:
    ids: tuple  # token ids as they are (a sampled continuation: re-tokenizing its text may differ)
    learn: bool = False
    tag: str = ""  # marks the positions of all its tokens


@dataclass(frozen=True)
class Embeds:
    vectors: torch.Tensor  # [n, d_lm]
    tag: str = ""
    target: int | None = None  # a token id to predict at this position (e.g. [RET]'s extra id)


@dataclass
class Batch:
    inputs_embeds: torch.Tensor  # [B, T, d]
    attention_mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    targets: torch.Tensor  # [B, T] token id at each position, or IGNORE
    tags: list[dict[str, list[int]]]  # per sequence: tag -> positions (in the padded batch)

    def positions(self, tag: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, column) index tensors of every position tagged `tag`, in order."""
        rows, cols = [], []
        for i, tags in enumerate(self.tags):
            for col in tags.get(tag, []):
                rows.append(i)
                cols.append(col)
        device = self.attention_mask.device
        return long_tensor(rows, device), long_tensor(cols, device)

    def last(self, tag: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns) of the last position tagged `tag` in each sequence."""
        cols = [tags[tag][-1] for tags in self.tags]
        device = self.attention_mask.device
        return torch.arange(len(cols), device=device), long_tensor(cols, device)


def context_length(lm) -> int | None:
    """How many positions the LM reads; None when its config names no limit (e.g. ALiBi models)."""
    return getattr(lm, "context_length", None)  # a config without the field raises AttributeError: no limit


def bos_token_id(tokenizer) -> int:
    """The id every assembled sequence starts with: the tokenizer's <bos>, or, for LMs whose
    tokenizer has none (Falcon, Qwen2), its <eos>: the separator such LMs saw before each document."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise ValueError("the LM's tokenizer has neither a bos nor an eos token to start a sequence with")
    return bos


def _fit_context(row: tuple, limit: int | None, keep: int, exact: bool, index: int) -> tuple:
    """A row (embeddings, targets, tags) cut to `limit` positions from the left, keeping its first
    `keep` positions (the <bos>); tags in the cut part are dropped. exact=True raises instead."""
    emb, tgt, tags = row
    cut = len(emb) - limit if limit else 0
    if cut <= 0:
        return row
    if exact:
        raise ValueError(f"sequence {index} has {len(emb)} positions but the LM's context is {limit}; "
                         f"shorten it by {cut}, or assemble with exact=False to drop its oldest {cut}")
    keep = min(keep, limit - 1)  # a context of one position keeps the last token, not <bos>
    kept = {tag: [p if p < keep else p - cut for p in positions if p < keep or p >= keep + cut]
            for tag, positions in tags.items()}
    return (torch.cat([emb[:keep], emb[keep + cut:]]), torch.cat([tgt[:keep], tgt[keep + cut:]]),
            {tag: positions for tag, positions in kept.items() if positions})


def token_ids(tokenizer, text: str) -> list[int]:
    """Ids of `text` without special tokens (through the Rust tokenizer when there is one: the
    training loops tokenize every step)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.encode(text, add_special_tokens=False).ids
    return tokenizer(text, add_special_tokens=False).input_ids


def assemble(lm, sequences: list[list], bos: bool = True, pad_left: bool = False, exact: bool = False) -> Batch:
    """Token embeddings and spliced vectors for each sequence, padded into one batch.
    pad_left=True is for generation: every sequence then ends at the same position. A sequence
    longer than the LM's context loses its oldest positions after <bos> (exact=True: ValueError)."""
    if not sequences:
        raise ValueError("assemble got an empty batch")
    return _padded(_rows(lm, sequences, bos, exact), pad_left)


def assemble_by_length(lm, sequences: list[list], batches: int) -> Iterator[tuple[list[int], Batch]]:
    """The sequences sorted by length and cut into `batches` batches of nearly equal size (fewer if
    there are fewer sequences), each padded only to its own longest, so each pads little. Yields
    (the indices in `sequences` of a batch's rows, the batch), shortest first, each batch assembled
    as it is asked for: the LM can run on one while the next is assembled."""
    if not sequences or batches < 1:
        raise ValueError(f"assemble_by_length needs sequences and at least one batch, got {len(sequences)} "
                         f"sequences in {batches} batches")
    texts = {s.text for sequence in sequences for s in sequence if isinstance(s, Text)}
    tokenized = {text: token_ids(lm.tokenizer, text) for text in texts}  # once, for the lengths and the rows
    lengths = [sum(_positions(segment, tokenized) for segment in sequence) for sequence in sequences]
    order = sorted(range(len(sequences)), key=lengths.__getitem__)  # stable: equal lengths keep their order
    for block in Group(world=batches).blocks(len(order)):  # contiguous blocks, sizes differing by at most one
        if block:
            rows = [order[i] for i in block]
            yield rows, _padded(_rows(lm, [sequences[i] for i in rows], True, False, tokenized), False)


def _positions(segment, tokenized: dict[str, list[int]]) -> int:
    """The positions a segment takes in a sequence (0 for what _rows refuses)."""
    if isinstance(segment, Text):
        return len(tokenized[segment.text])
    if isinstance(segment, Tokens):
        return len(segment.ids)
    return len(segment.vectors) if isinstance(segment, Embeds) else 0


def _rows(lm, sequences: list[list], bos: bool, exact: bool, tokenized: dict | None = None) -> list[tuple]:
    """Each sequence as (embeddings [n, d], targets [n], tags), cut to the LM's context; `tokenized`:
    the token ids of its texts, where they are known."""
    tok = lm.tokenizer
    embedding = lm.model.get_input_embeddings()
    device = embedding.weight.device
    limit = context_length(lm)
    rows = []
    for index, sequence in enumerate(sequences):
        chunks, targets, tags, length = [], [], {}, 0
        for segment in [_BOS, *sequence] if bos else sequence:
            if segment is _BOS:
                ids = long_tensor([bos_token_id(tok)], device)
                chunks.append(embedding(ids))
                targets.append(torch.full((1,), IGNORE, device=device))
                length += 1
            elif isinstance(segment, Text):
                words = tokenized[segment.text] if tokenized else token_ids(tok, segment.text)
                ids = long_tensor(words, device)
                if len(ids) == 0:
                    raise ValueError(f"text segment {segment.text!r} has no tokens")
                chunks.append(embedding(ids))
                targets.append(ids if segment.learn else torch.full_like(ids, IGNORE))
                length += len(ids)
                if segment.tag:
                    tags.setdefault(segment.tag, []).append(length - 1)
            elif isinstance(segment, Tokens):
                ids = long_tensor(segment.ids, device)
                if len(ids) == 0:
                    raise ValueError("a Tokens segment has no ids")
                chunks.append(embedding(ids))
                targets.append(ids if segment.learn else torch.full_like(ids, IGNORE))
                if segment.tag:
                    tags.setdefault(segment.tag, []).extend(range(length, length + len(ids)))
                length += len(ids)
            elif isinstance(segment, Embeds):
                n = len(segment.vectors)
                chunks.append(segment.vectors.to(device=device, dtype=embedding.weight.dtype))
                fill = IGNORE if segment.target is None else segment.target
                targets.append(torch.full((n,), fill, dtype=torch.long, device=device))
                if segment.tag:
                    tags.setdefault(segment.tag, []).extend(range(length, length + n))
                length += n
            else:
                raise TypeError(f"a sequence holds Text, Tokens and Embeds segments, got {type(segment).__name__}")
        rows.append(_fit_context((torch.cat(chunks), torch.cat(targets), tags), limit, int(bos), exact, index))
    return rows


def _padded(rows: list[tuple], pad_left: bool) -> Batch:
    """Rows from _rows, padded into one batch (on the left for generation)."""
    width = max(len(r[0]) for r in rows)
    dim, device = rows[0][0].shape[1], rows[0][0].device
    embeds = torch.zeros(len(rows), width, dim, device=device, dtype=rows[0][0].dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    targets = torch.full((len(rows), width), IGNORE, dtype=torch.long, device=device)
    all_tags = []
    for i, (emb, tgt, tags) in enumerate(rows):
        n = len(emb)
        start = width - n if pad_left else 0
        embeds[i, start:start + n] = emb
        mask[i, start:start + n] = 1
        targets[i, start:start + n] = tgt
        all_tags.append({tag: [p + start for p in positions] for tag, positions in tags.items()})
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return Batch(embeds, mask, positions, targets, all_tags)


def forward(lm, batch: Batch, extra: ExtraTokens | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states [B, T, d] and next-token logits [B, T, V (+ extra)] of the frozen LM, both
    float32 whatever the LM's dtype (so float32 heads and extra tokens work on a bf16 LM)."""
    _check_fits(lm, batch)
    out = lm.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids, output_hidden_states=True)
    hidden, logits = out.hidden_states[-1].float(), out.logits.float()
    if extra is not None:
        logits = torch.cat([logits, extra.logits(hidden)], -1)
    return hidden, logits


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each target under softmax(logits / temperature) given what precedes it,
    [B, T-1] (position t holds target t+1; 0 where there is no target)."""
    shifted = targets[:, 1:]
    logp = (logits[:, :-1].float() / temperature).log_softmax(-1)
    picked = logp.gather(-1, shifted.clamp(min=0)[..., None])[..., 0]
    return picked * (shifted != IGNORE)


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each sequence's targets given what precedes them, [B]."""
    return token_logprobs(logits, targets).sum(1)


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, ranks: Group = SINGLE) -> torch.Tensor:
    """Cross-entropy of each target given everything before it (mean over targets); over data-parallel
    `ranks`, this rank's share: its summed cross-entropy over every rank's number of targets."""
    shifted = targets[:, 1:]
    count = ranks.sum((shifted != IGNORE).sum())
    if not count:
        raise ValueError("this batch has no targets to learn")
    flat = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    if ranks.world == 1:
        return F.cross_entropy(flat, shifted.reshape(-1), ignore_index=IGNORE)
    return F.cross_entropy(flat, shifted.reshape(-1), ignore_index=IGNORE, reduction="sum") / count


def teacher_forced_loss(lm, sequences: list[list], ranks: Group = SINGLE) -> torch.Tensor:
    """The LM's cross-entropy on the `learn=True` text of each sequence, given what precedes it: the
    loss of every teacher-forced trainer here (ClipCap, ILLUME's tuning and SFT); over `ranks`, this
    rank's sequences and its share of the loss."""
    batch = assemble(lm, sequences)
    _, logits = forward(lm, batch)
    return next_token_loss(logits, batch.targets, ranks)


def _check_fits(lm, batch: Batch) -> None:
    """A clear error, not an IndexError deep in the position embedding, for a batch that was not
    made by `assemble` for this LM (assemble cuts every sequence to the context)."""
    limit, width = context_length(lm), batch.inputs_embeds.shape[1]
    if limit and width > limit:
        raise ValueError(f"batch has {width} positions but the LM's context is {limit}; build it with "
                         "bridge.assemble for this LM, which cuts longer sequences")


@dataclass
class Generation:
    tokens: list[list[int]]  # generated ids per sequence (stop token included, nothing after it)
    texts: list[str]
    logprobs: torch.Tensor  # [B, steps] log-probability of each generated token (0 after the stop)
    hidden: torch.Tensor  # [B, steps, d] hidden state that produced each token
    mask: torch.Tensor  # [B, steps] 1 where a token was generated


def stop_token_ids(tokenizer, stop) -> set[int]:
    """The ids that end generation: <eos>, ids as given, and for a word such as "." every token that
    is that word, bare or with a leading-space mark (byte-level BPE writes " ." as "Ġ.", as GPT-2's
    and OPT's tokenizers do; SentencePiece as "▁.")."""
    vocab = tokenizer.get_vocab()
    ids = {tokenizer.eos_token_id}
    for word in stop:
        if isinstance(word, int):
            ids.add(word)
            continue
        found = {vocab[t] for t in (word, "Ġ" + word, "▁" + word) if t in vocab}
        if not found:
            raise ValueError(f"stop word {word!r} is not a token of this tokenizer")
        ids |= found
    return ids


@torch.no_grad()
def generate(lm, batch: Batch, max_new_tokens: int, temperature: float = 0.0, stop: tuple = (".",),
             extra: ExtraTokens | None = None, generator: torch.Generator | None = None,
             exact: bool = False, banned: tuple[int, ...] = ()) -> Generation:
    """Continue a left-padded batch with the KV cache: greedy (temperature 0) or sampling, until a
    `stop` token (a token string or an id, <eos> always) or `max_new_tokens`. With `extra`, its
    tokens ([RET]) can be generated too, and are fed back as their own embeddings. `banned` token
    ids are never written: their probability is 0 (in the log-probabilities returned too).
    The LM's context caps the tokens written: a prompt of W positions leaves room for
    context - W + 1 (the last token is never fed back, so it needs no position); exact=True raises
    when max_new_tokens does not fit instead."""
    _check_fits(lm, batch)
    limit = context_length(lm)
    if limit:
        room = limit - batch.inputs_embeds.shape[1] + 1
        if exact and max_new_tokens > room:
            raise ValueError(f"{max_new_tokens} new tokens after a prompt of {batch.inputs_embeds.shape[1]} "
                             f"positions do not fit the LM's context of {limit} (room for {room})")
        max_new_tokens = min(max_new_tokens, room)
    tok = lm.tokenizer
    embedding = lm.model.get_input_embeddings()
    stop_ids = torch.tensor(sorted(stop_token_ids(tok, stop)), device=batch.attention_mask.device)
    B = len(batch.inputs_embeds)
    mask = batch.attention_mask
    position = batch.position_ids[:, -1:]
    inputs, cache = batch.inputs_embeds, None
    done = torch.zeros(B, dtype=torch.bool, device=mask.device)
    tokens, logprobs, hiddens, alive = [], [], [], []
    for _ in range(max_new_tokens):
        out = lm.model(inputs_embeds=inputs, attention_mask=mask,
                       position_ids=batch.position_ids if cache is None else position,
                       past_key_values=cache, use_cache=True, output_hidden_states=True)
        cache = out.past_key_values
        hidden = out.hidden_states[-1][:, -1].float()
        logits = out.logits[:, -1].float()
        if extra is not None:
            logits = torch.cat([logits, extra.logits(hidden).float()], -1)
        if banned:
            logits = logits.index_fill(-1, torch.tensor(banned, device=logits.device), float("-inf"))
        logp = logits.log_softmax(-1)
        if temperature > 0:
            choice = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)[:, 0]
        else:
            choice = logits.argmax(-1)
        choice = torch.where(done, torch.full_like(choice, tok.pad_token_id), choice)
        tokens.append(choice)
        logprobs.append(torch.where(done, 0.0, logp.gather(1, choice[:, None])[:, 0]))
        hiddens.append(hidden)
        alive.append(~done)
        done = done | torch.isin(choice, stop_ids)
        if done.all():
            break
        vocab = embedding.num_embeddings
        is_extra = choice >= vocab
        inputs = embedding(choice.clamp(max=vocab - 1))
        if extra is not None and is_extra.any():
            inputs = torch.where(is_extra[:, None], extra.input[(choice - vocab).clamp(min=0)].to(inputs.dtype), inputs)
        inputs = inputs[:, None]
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=mask.device)], 1)
        position = position + 1
    ids = torch.stack(tokens, 1)
    alive_mask = torch.stack(alive, 1)
    per_row = [[t for t, a in zip(row.tolist(), live.tolist()) if a] for row, live in zip(ids, alive_mask)]
    texts = [decode(lm, row, extra) for row in per_row]
    return Generation(per_row, texts, torch.stack(logprobs, 1), torch.stack(hiddens, 1), alive_mask.long())


def decode(lm, ids: list[int], extra: ExtraTokens | None = None) -> str:
    """Token ids to text; extra tokens appear by name ('[RET]')."""
    vocab = lm.model.get_input_embeddings().num_embeddings
    words, run = [], []
    for t in ids:
        if t >= vocab and extra is not None:
            words.append(lm.tokenizer.decode(run, skip_special_tokens=True))
            words.append(extra.names[t - vocab])
            run = []
        else:
            run.append(t)
    words.append(lm.tokenizer.decode(run, skip_special_tokens=True))
    return " ".join(w for w in words if w)
