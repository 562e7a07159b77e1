"""FROMAGe (Koh, Salakhutdinov & Fried, "Grounding Language Models to Images for Multimodal Inputs
and Outputs", ICML 2023): a frozen LM and a frozen CLIP; trained are only

- a linear map from the CLIP image embedding to k LM input embeddings (captioning, image inputs),
- a [RET] token: its own input embedding and output vector (the LM learns to emit it),
- two linear maps into a shared retrieval space: the LM's hidden state at [RET], and the CLIP image
  embedding,
- a learnable logit scale (initialised to 1/0.07, clamped at 100).

Losses: captioning cross-entropy with the image tokens before the caption; cross-entropy on
"caption [RET]" (so the LM learns when to retrieve); and a symmetric InfoNCE between the [RET]
embedding and the image embedding. Half of the examples concatenate two image-caption pairs, as
the paper does, so the model also sees interleaved sequences.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import bridge as br
from ..bridge import Embeds, Text
from ..repro import generator
from ..training import adamw, train_loop

RET = "[RET]"


@dataclass
class FromageConfig:
    image_tokens: int = 4  # k: LM input embeddings per image
    bridge: str = "linear"  # the paper's linear map, or "mlp"
    retrieval_dim: int = 128  # the shared retrieval space (the paper: 256)
    use_ret: bool = True  # False: retrieve from the last caption token's hidden state (ablation)
    interleaved: float = 0.5  # share of training examples made of two image-caption pairs
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    seed: int = 0


class Fromage(nn.Module):
    def __init__(self, clip_dim: int, lm, config: FromageConfig):
        super().__init__()
        self.config, self.clip_dim = config, clip_dim
        self.lm = lm  # frozen; a plain attribute, so it is not part of this module's parameters
        d = lm.embed_dim
        self.image_to_lm = br.Bridge(clip_dim, d, config.image_tokens, config.bridge)
        self.extra = br.ExtraTokens([RET], d, lm.model.get_input_embeddings().num_embeddings)
        self.text_to_retrieval = nn.Linear(d, config.retrieval_dim)
        self.image_to_retrieval = nn.Linear(clip_dim, config.retrieval_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    # ------------------------------------------------------------------ sequences
    def image_segment(self, image_embedding: torch.Tensor) -> Embeds:
        """One image (a CLIP embedding [d_clip]) as k LM input embeddings."""
        return Embeds(self.image_to_lm(image_embedding[None])[0], tag="image")

    def ret_segment(self) -> Embeds:
        return Embeds(self.extra.embedding(RET), tag="ret", target=self.extra.id(RET))

    def to_segments(self, items, learn: bool = False) -> list:
        """An interleaved list of str and CLIP image embeddings [d_clip] as bridge segments."""
        segments = []
        for item in items:
            if isinstance(item, str):
                segments.append(Text(item, learn))
            elif isinstance(item, torch.Tensor) and item.shape == (self.clip_dim,):
                segments.append(self.image_segment(item))
            else:
                raise TypeError(f"interleaved inputs are str or CLIP embeddings of shape ({self.clip_dim},), "
                                f"got {type(item).__name__} {tuple(getattr(item, 'shape', ()))}")
        return segments

    def query_segments(self, items) -> list:
        """What retrieval reads: the inputs, then [RET] (or, without [RET], nothing: the last
        input token's hidden state is used)."""
        return self._end_query(self.to_segments(items))

    def _end_query(self, segments: list) -> list:
        """[RET] after the inputs; or, in the ablation without it, a tag on the last input token
        (which must then be text)."""
        if self.config.use_ret:
            return [*segments, self.ret_segment()]
        last = segments[-1]
        if not isinstance(last, Text):
            raise ValueError("without [RET], a retrieval query must end with text")
        return [*segments[:-1], Text(last.text, last.learn, tag="ret")]

    # ------------------------------------------------------------------ embeddings
    def retrieval_from_batch(self, hidden: torch.Tensor, batch: br.Batch, every: bool = False) -> torch.Tensor:
        rows, cols = batch.positions("ret") if every else batch.last("ret")
        return F.normalize(self.text_to_retrieval(hidden[rows, cols]), dim=-1)

    def image_retrieval(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_to_retrieval(image_embeddings), dim=-1)

    def text_retrieval(self, queries: list, batch_size: int = 256) -> torch.Tensor:
        """Retrieval embeddings of queries: each a str or an interleaved list of str and images."""
        out = []
        with torch.no_grad():
            for i in range(0, len(queries), batch_size):
                chunk = [[q] if isinstance(q, str) else q for q in queries[i:i + batch_size]]
                batch = br.assemble(self.lm, [self.query_segments(q) for q in chunk])
                hidden, _ = br.forward(self.lm, batch)
                out.append(self.retrieval_from_batch(hidden, batch))
        return torch.cat(out)

    # ------------------------------------------------------------------ training
    def losses(self, image_embeddings: torch.Tensor, captions: dict[int, str], pairs: list[tuple[int, ...]]) -> dict:
        """Losses on examples, each one or two (image, caption) pairs given by indices in `pairs`."""
        caption_seqs, retrieval_seqs, targets = [], [], []
        for example in pairs:
            caption_seq, retrieval_seq = [], []
            for i in example:
                caption_seq += [self.image_segment(image_embeddings[i]), Text(captions[i], learn=True)]
                retrieval_seq = self._end_query([*retrieval_seq, Text(captions[i], learn=True)])
                targets.append(i)
            caption_seqs.append(caption_seq)
            retrieval_seqs.append(retrieval_seq)
        caption_batch = br.assemble(self.lm, caption_seqs)
        _, caption_logits = br.forward(self.lm, caption_batch, self.extra)
        retrieval_batch = br.assemble(self.lm, retrieval_seqs)
        hidden, retrieval_logits = br.forward(self.lm, retrieval_batch, self.extra)
        text = self.retrieval_from_batch(hidden, retrieval_batch, every=True)
        image = self.image_retrieval(image_embeddings[torch.tensor(targets)])
        logits = self.logit_scale.exp().clamp(max=100.0) * text @ image.T
        # Two examples may show the same image: those pairs are positives too.
        index = torch.tensor(targets)
        same = (index[:, None] == index[None, :]).float()
        soft = same / same.sum(1, keepdim=True)  # symmetric: a duplicate group shares its row sum
        contrastive = 0.5 * (F.cross_entropy(logits, soft) + F.cross_entropy(logits.T, soft))
        losses = {"caption": br.next_token_loss(caption_logits, caption_batch.targets),
                  "ret_text": br.next_token_loss(retrieval_logits, retrieval_batch.targets),
                  "contrastive": contrastive}
        losses["total"] = losses["caption"] + losses["ret_text"] + losses["contrastive"]
        return losses

    def fit(self, image_embeddings: torch.Tensor, caption_fn) -> dict:
        """Train on frozen CLIP embeddings [N, d_clip] (computed once, before training) and captions
        drawn by caption_fn(index, step) -> str. Returns the training log."""
        cfg = self.config
        order = generator(cfg.seed, "fromage-batches")

        def loss_fn(step: int) -> dict:
            idx = torch.randint(len(image_embeddings), (cfg.batch_size,), generator=order).tolist()
            two = torch.rand(cfg.batch_size, generator=order) < cfg.interleaved
            partner = torch.randint(len(image_embeddings), (cfg.batch_size,), generator=order).tolist()
            pairs = [(i, j) if t else (i,) for i, j, t in zip(idx, partner, two.tolist())]
            captions = {i: caption_fn(i, step) for example in pairs for i in example}
            return self.losses(image_embeddings, captions, pairs)

        optimizer = adamw(self.parameters(), cfg.lr, cfg.weight_decay)
        return train_loop(self, optimizer, cfg.steps, cfg.warmup_steps, loss_fn, "FROMAGe")

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def caption(self, image_embeddings: torch.Tensor, max_new_tokens: int = 40, batch_size: int = 256,
                temperature: float = 0.0) -> list[str]:
        """Greedy (or sampled) captions of images [N, d_clip]."""
        texts = []
        for i in range(0, len(image_embeddings), batch_size):
            chunk = image_embeddings[i:i + batch_size]
            batch = br.assemble(self.lm, [[self.image_segment(e)] for e in chunk], pad_left=True)
            texts += br.generate(self.lm, batch, max_new_tokens, temperature).texts
        return [t.strip() for t in texts]

    @torch.no_grad()
    def generate_interleaved(self, items, candidates: torch.Tensor, max_new_tokens: int = 48) -> list:
        """Continue an interleaved input of str and images; every [RET] the model writes becomes
        the best-matching image among `candidates` [M, d_clip]. Returns str pieces and candidate
        indices, in order."""
        segments = self.to_segments(items)
        ret_id = self.extra.id(RET)
        out = br.generate(self.lm, br.assemble(self.lm, [segments], pad_left=True), max_new_tokens,
                          extra=self.extra, stop=(ret_id,))
        pieces, written, words = [], [], []
        for token in out.tokens[0]:
            if token != ret_id:
                words.append(token)
                continue
            if words:
                written.append(Text(br.decode(self.lm, words)))
                pieces.append(written[-1].text)
                words = []
            written.append(self.ret_segment())
            pieces.append(None)  # filled below
        if words:
            pieces.append(br.decode(self.lm, words))
        if None in pieces:
            # Read the [RET] hidden states with the whole written sequence as context.
            batch = br.assemble(self.lm, [[*segments, *written]])
            hidden, _ = br.forward(self.lm, batch)
            queries = self.retrieval_from_batch(hidden, batch, every=True)
            chosen = iter((queries @ self.image_retrieval(candidates).T).argmax(1).tolist())
            pieces = [next(chosen) if p is None else p for p in pieces]
        return pieces

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
