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

Three options train as the official code does (github.com/kohjingyu/fromage, main.py), each off by
default: `interleave_per="batch"` (one coin flip a step concatenates adjacent pairs, for the
captioning loss only), `tied_ret` ([RET] one row of a tied embedding matrix, re-normalised every
step) and `max_caption_tokens` (captions cut as its tokenizer call cuts them).

What the LM is shown of an image is the CLIP embedding (`image_input="embedding"`, the paper), or
that embedding followed by CLIP's patch tokens (`"patches"`): a pooled embedding keeps *what* is in a
picture better than *where* (chapter 3 measures it). Retrieval always uses the CLIP embedding.
Features are computed once by the frozen CLIP (`features`) and reused by every step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import bridge as br
from .. import checkpoint
from ..bridge import Embeds, Text, Tokens
from ..contracts import Backbones
from ..distributed import SINGLE, Group, gather_rows
from ..features import check_image_input, feature_dim, image_features
from ..repro import generator
from ..training import Run, adamw, train_loop

RET = "[RET]"


@dataclass
class FromageConfig:
    image_tokens: int = 4  # k: LM input embeddings per image
    image_input: str = "embedding"  # what the bridge reads: the CLIP "embedding", or it and its "patches"
    bridge: str = "linear"  # the paper's linear map, or "mlp"
    retrieval_dim: int = 128  # the shared retrieval space (the paper: 256)
    use_ret: bool = True  # False: retrieve from the last caption token's hidden state (ablation)
    interleaved: float = 0.5  # share of training examples made of two image-caption pairs
    steps: int = 400
    batch_size: int = 64  # examples per step for the captioning loss
    retrieval_batch_size: int | None = None  # examples per step for the retrieval losses (default: batch_size)
    lr: float = 3e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    seed: int = 0
    # At most this many sequences per LM forward, sorted by length so each micro-batch pads little (the
    # same losses; see Fromage.losses). None: one forward per kind of sequence, padded to its longest.
    micro_batch: int | None = None
    # Which examples concatenate two image-caption pairs: "example" (ours: each example, with a share
    # `interleaved` of them, a random partner, read by every loss) or "batch" (the official code,
    # main.py:107-108, 433-435: one coin flip a step, with probability `interleaved`; heads, the
    # captioning loss reads adjacent examples concatenated; the retrieval losses never do).
    interleave_per: str = "example"
    # [RET] as the official code has it (main.py:504-521): one new row of the LM's tied embedding
    # matrix, so its input embedding is its output vector (no bias), re-normalised after every step to
    # the mean norm of the LM's token embeddings. False: its own input embedding and output vector.
    tied_ret: bool = False
    # Captions cut to this many tokens, <bos> and [RET] included, as the official tokenizer call cuts
    # them (main.py:120 --max-len 24; data.py:107-123). None: captions as they are.
    max_caption_tokens: int | None = None


INTERLEAVE_PER = ("example", "batch")


class TiedExtraTokens(br.ExtraTokens):
    """Extra tokens whose output vector is their input embedding, with no bias: as a row added to a
    tied embedding matrix (OPT's) is read by the LM's head too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.output, self.bias  # the head reads `input`

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.input.T


class Fromage(checkpoint.Trained, nn.Module):
    config_class = FromageConfig

    def __init__(self, clip, lm, config: FromageConfig):
        super().__init__()
        check_image_input(config.image_input)
        if config.micro_batch is not None and config.micro_batch < 1:
            raise ValueError(f"micro_batch must be None or a number of sequences >= 1, got {config.micro_batch!r}")
        if config.interleave_per not in INTERLEAVE_PER:
            raise ValueError(f"interleave_per must be one of {', '.join(INTERLEAVE_PER)}, "
                             f"got {config.interleave_per!r}")
        if config.interleave_per == "batch" and config.batch_size % 2:
            raise ValueError(f"interleave_per='batch' concatenates adjacent pairs: batch_size must be even, "
                             f"got {config.batch_size}")
        if config.max_caption_tokens is not None and config.max_caption_tokens < 3:
            raise ValueError("max_caption_tokens must be None or >= 3 (<bos>, a caption token, [RET]), "
                             f"got {config.max_caption_tokens!r}")
        if config.max_caption_tokens is not None and not config.use_ret:
            raise ValueError("max_caption_tokens cuts captions before [RET]: it needs use_ret=True")
        self.config = config
        self.clip, self.lm = clip, lm  # frozen; plain attributes, so not part of this module's parameters
        self.clip_dim = clip.embed_dim
        self.feature_dim = feature_dim(clip, config.image_input)
        d = lm.embed_dim
        self.image_to_lm = br.Bridge(self.feature_dim, d, config.image_tokens, config.bridge)
        # [RET] starts as an average word: from a random start, how well it learned to retrieve
        # depended on the seed (R@1 0.21-0.46 after 120 steps; from the mean, 0.49 for both seeds).
        words = lm.model.get_input_embeddings().weight
        tokens = TiedExtraTokens if config.tied_ret else br.ExtraTokens
        self.extra = tokens([RET], d, len(words), input_init=words.mean(0))
        # The LM is frozen, so the norm [RET] is held to (tied_ret) is fixed: computed once.
        self.word_norm = words.detach().float().norm(dim=1).mean().item()
        if config.tied_ret:
            self.renormalize_ret()
        self.text_to_retrieval = nn.Linear(d, config.retrieval_dim)
        self.image_to_retrieval = nn.Linear(self.clip_dim, config.retrieval_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.to(br.lm_device(lm))

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    # ------------------------------------------------------------------ images
    def features(self, images) -> torch.Tensor:
        """What the model keeps of each image [N, feature_dim], computed once by the frozen CLIP:
        its embedding, then (image_input="patches") its patch tokens, flattened."""
        return image_features(self.clip, images, self.config.image_input)

    def as_features(self, images) -> torch.Tensor:
        """Features [N, feature_dim] on the model's device, as they are or computed from images
        (uint8 [N, H, W, 3] or PIL)."""
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            if images.ndim != 2 or images.shape[1] != self.feature_dim:
                raise ValueError(f"image features must be [N, {self.feature_dim}] (from Fromage.features), "
                                 f"got {tuple(images.shape)}")
            return images.to(self.device)
        return self.features(images).to(self.device)

    # ------------------------------------------------------------------ sequences
    def image_segment(self, features: torch.Tensor) -> Embeds:
        """One image (its features [feature_dim]) as k LM input embeddings."""
        return self.image_segments(features[None])[0]

    def image_segments(self, features: torch.Tensor) -> list[Embeds]:
        """Images (features [N, feature_dim]) as k LM input embeddings each, in one pass of the bridge
        (one matrix product, not N: in training its gradient is the costly part)."""
        return [Embeds(vectors, tag="image") for vectors in self.image_to_lm(features.to(self.device))]

    def ret_segment(self) -> Embeds:
        return Embeds(self.extra.embedding(RET), tag="ret", target=self.extra.id(RET))

    def caption_segment(self, text: str) -> Text | Tokens:
        """A training caption, a target of the loss: as it is, or (config.max_caption_tokens) its first
        max_caption_tokens - 2 tokens, the room the official tokenizer call leaves beside <bos> and [RET]."""
        limit = self.config.max_caption_tokens
        if limit is None:
            return Text(text, learn=True)
        return Tokens(tuple(br.token_ids(self.lm.tokenizer, text)[:limit - 2]), learn=True)

    def to_segments(self, items, learn: bool = False) -> list:
        """An interleaved list of str, images (uint8 [H, W, 3] or PIL) and image features
        [feature_dim] as bridge segments."""
        if isinstance(items, str) or not len(items):
            raise ValueError("an interleaved input is a non-empty list of str and images")
        segments = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                if not item.strip():
                    raise ValueError(f"interleaved input item {i} is an empty string")
                segments.append(Text(item, learn))
            elif isinstance(item, (torch.Tensor, np.ndarray)) or type(item).__module__.startswith("PIL"):
                one = item[None] if isinstance(item, (torch.Tensor, np.ndarray)) else [item]  # a batch of one
                segments.append(self.image_segment(self.as_features(one)[0]))
            else:
                raise TypeError(f"interleaved inputs are str, images or image features [{self.feature_dim}]; "
                                f"item {i} is {type(item).__name__}")
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
        return self.retrieval_from_hidden(hidden[rows, cols])

    def retrieval_from_hidden(self, ret_hidden: torch.Tensor) -> torch.Tensor:
        """Retrieval embeddings of the LM's hidden states [n, d] at [RET] tokens."""
        return F.normalize(self.text_to_retrieval(ret_hidden), dim=-1)

    def image_retrieval(self, images) -> torch.Tensor:
        """Retrieval embeddings [N, retrieval_dim] of images (or their features): from the CLIP embedding."""
        return F.normalize(self.image_to_retrieval(self.as_features(images)[:, :self.clip_dim]), dim=-1)

    def text_retrieval(self, queries: list, batch_size: int = 256) -> torch.Tensor:
        """Retrieval embeddings of queries: each a str or an interleaved list of str and images."""
        if isinstance(queries, str):
            raise ValueError("text_retrieval takes a list of queries; wrap one query in a list")
        out = []
        with torch.no_grad():
            for i in range(0, len(queries), batch_size):
                chunk = [[q] if isinstance(q, str) else q for q in queries[i:i + batch_size]]
                batch = br.assemble(self.lm, [self.query_segments(q) for q in chunk])
                hidden, _ = br.forward(self.lm, batch)
                out.append(self.retrieval_from_batch(hidden, batch))
        return torch.cat(out)

    # ------------------------------------------------------------------ training
    def losses(self, features: torch.Tensor, captions: dict[int, str], pairs: list[tuple[int, ...]],
               queries: dict[int, str] | None = None, captioned: int | None = None,
               ranks: Group = SINGLE, caption_examples: list[tuple[int, ...]] | None = None) -> dict:
        """Losses on examples, each one or two (image, caption) pairs given by indices in `pairs`;
        `queries` are the texts that retrieve each image (default: its caption). The retrieval losses
        read every example, the captioning loss the first `captioned` (default: all): text-only
        retrieval sequences are cheap, and contrastive learning gains from more negatives. Over
        data-parallel `ranks`, `pairs` is the global batch: this rank reads its block of each kind of
        example and returns its share of every loss (distributed.py). With config.micro_batch, the
        LM reads the same sequences in micro-batches sorted by length (`lm_losses_by_length`).
        `caption_examples`, if given, are what the captioning loss reads instead of pairs[:captioned]
        (interleave_per="batch": other examples than the retrieval losses')."""
        queries = queries or captions
        for_caption = pairs[:captioned] if caption_examples is None else caption_examples
        mine = ranks.take(for_caption)
        retrieval_blocks = ranks.blocks(len(pairs))
        shown = sorted({i for example in mine for i in example})
        images = dict(zip(shown, self.image_segments(features[shown])))
        caption_seqs = [[s for i in example for s in (images[i], self.caption_segment(captions[i]))]
                        for example in mine]
        retrieval_seqs = []
        for n in retrieval_blocks[ranks.rank]:
            retrieval_seq = []
            for i in pairs[n]:
                retrieval_seq = self._end_query([*retrieval_seq, self.caption_segment(queries[i])])
            retrieval_seqs.append(retrieval_seq)
        targets = [i for example in pairs for i in example]  # every rank's [RET]s, in rank order
        if self.config.micro_batch is None:
            caption, ret_text, ret_hidden = self.lm_losses(caption_seqs, retrieval_seqs, ranks)
        else:
            # The same number of micro-batches on every rank: ranks sharing the LM (FSDP) call it as often.
            largest = max(map(len, ranks.blocks(len(for_caption)))) + max(map(len, retrieval_blocks))
            micro_batches = math.ceil(largest / self.config.micro_batch)
            caption, ret_text, ret_hidden = self.lm_losses_by_length(caption_seqs, retrieval_seqs, micro_batches,
                                                                     ranks)
        text = gather_rows(self.retrieval_from_hidden(ret_hidden),
                           [sum(len(pairs[n]) for n in block) for block in retrieval_blocks], ranks)
        index = torch.tensor(targets, device=self.device)
        image = self.image_retrieval(features[index])
        logits = self.logit_scale.exp().clamp(max=100.0) * text @ image.T
        # Two examples may show the same image: those pairs are positives too.
        same = (index[:, None] == index[None, :]).float()
        soft = same / same.sum(1, keepdim=True)  # symmetric: a duplicate group shares its row sum
        contrastive = 0.5 * (F.cross_entropy(logits, soft) + F.cross_entropy(logits.T, soft))
        losses = {"caption": caption, "ret_text": ret_text,
                  "contrastive": contrastive / ranks.world}  # every rank computes it whole: a share each
        losses["total"] = losses["caption"] + losses["ret_text"] + losses["contrastive"]
        return losses

    def lm_losses(self, caption_seqs: list, retrieval_seqs: list, ranks: Group = SINGLE) -> tuple:
        """The LM's part of the losses, one forward per kind of sequence, each padded to its longest:
        this rank's shares of the captioning and the [RET]-text losses, and the hidden states at every
        [RET] [n, d], by sequence, then position."""
        caption_batch = br.assemble(self.lm, caption_seqs)
        _, caption_logits = br.forward(self.lm, caption_batch, self.extra)
        retrieval_batch = br.assemble(self.lm, retrieval_seqs)
        hidden, retrieval_logits = br.forward(self.lm, retrieval_batch, self.extra)
        rows, cols = retrieval_batch.positions("ret")
        return (br.next_token_loss(caption_logits, caption_batch.targets, ranks),
                br.next_token_loss(retrieval_logits, retrieval_batch.targets, ranks), hidden[rows, cols])

    def lm_losses_by_length(self, caption_seqs: list, retrieval_seqs: list, micro_batches: int,
                            ranks: Group = SINGLE) -> tuple:
        """What `lm_losses` returns, from `micro_batches` forwards over this rank's sequences of both
        kinds together, sorted by length (bridge.assemble_by_length): each micro-batch pads only to its
        own longest. Each loss is its summed cross-entropy over the global number of its targets, as
        over ranks. Every micro-batch's graph is kept until the one backward: the contrastive loss
        couples every [RET] of the batch, and recomputing the retrieval sequences instead (gradient
        caching) would cost a third LM pass over them. So the memory is the whole batch's, less its
        padding."""
        n_caption = len(caption_seqs)
        summed = torch.zeros(2, device=self.device)  # cross-entropy summed over targets: captioning, [RET]-text
        counts = torch.zeros(2, dtype=torch.long, device=self.device)
        ret_hidden, ret_keys = [], []
        for rows, batch in br.assemble_by_length(self.lm, [*caption_seqs, *retrieval_seqs], micro_batches):
            hidden, logits = br.forward(self.lm, batch, self.extra)
            shifted = batch.targets[:, 1:]
            per_token = F.cross_entropy(logits[:, :-1].flatten(0, 1), shifted.flatten(), ignore_index=br.IGNORE,
                                        reduction="none").view_as(shifted)
            kind = br.long_tensor([int(r >= n_caption) for r in rows], self.device)
            summed = summed.index_add(0, kind, per_token.sum(1))
            counts = counts.index_add(0, kind, (shifted != br.IGNORE).sum(1))
            rets = [(i, r, col) for i, r in enumerate(rows) for col in batch.tags[i].get("ret", [])]
            if rets:
                ret_hidden.append(hidden[br.long_tensor([i for i, _, _ in rets], self.device),
                                         br.long_tensor([col for _, _, col in rets], self.device)])
                ret_keys += [(r, col) for _, r, col in rets]
        counts = ranks.sum(counts)
        if not counts.all():
            raise ValueError(f"this batch has no targets to learn (captioning, [RET]-text: {counts.tolist()})")
        caption, ret_text = summed / counts
        order = sorted(range(len(ret_keys)), key=ret_keys.__getitem__)  # as lm_losses: by sequence, then position
        return caption, ret_text, torch.cat(ret_hidden)[br.long_tensor(order, self.device)]

    @torch.no_grad()
    def renormalize_ret(self) -> None:
        """[RET]'s embedding scaled to the mean norm of the LM's token embeddings (tied_ret: after every
        step, as main.py:517-521 does, so the row it shares with the head cannot grow)."""
        row = self.extra.input[self.extra.names.index(RET)]
        row.mul_(self.word_norm / row.norm())

    def fit(self, features: torch.Tensor, caption_fn, query_fn=None, run: Run | None = None) -> dict:
        """Train on image features [N, feature_dim] (from `features`: computed once, before training)
        and captions drawn by caption_fn(index, step) -> str; query_fn(index, step) -> str, if given,
        draws the texts that learn to retrieve each image (else they are the captions). `run`: over
        data-parallel ranks, with checkpoints (training.Run; default one process). Returns the
        training log."""
        run = run or Run()
        cfg = self.config
        order = generator(cfg.seed, "fromage-batches")  # data order is drawn on the CPU, the same on every device
        features = self.as_features(features)  # moved to the device once, not every step

        def loss_fn(step: int) -> dict:
            if cfg.interleave_per == "batch":
                pairs, caption_examples = self.draw_batch_examples(len(features), order)
            else:
                pairs, caption_examples = self.draw_examples(len(features), order), None
            captions = {i: caption_fn(i, step) for example in pairs for i in example}
            queries = {i: query_fn(i, step) for i in captions} if query_fn else None
            return self.losses(features, captions, pairs, queries, captioned=cfg.batch_size, ranks=run.ranks,
                               caption_examples=caption_examples)

        optimizer = adamw(self.parameters(), cfg.lr, cfg.weight_decay)
        if cfg.tied_ret:
            optimizer.register_step_post_hook(lambda *_: self.renormalize_ret())
        return train_loop(self, optimizer, cfg.steps, cfg.warmup_steps, loss_fn, "FROMAGe",
                          clip_groups=self.clip_groups(), streams={"fromage-batches": order}, run=run)

    def draw_examples(self, n_images: int, order: torch.Generator) -> list[tuple[int, ...]]:
        """One step's examples, drawn from `order` (fit's "fromage-batches" stream): image indices below
        n_images, one per example or, for a share config.interleaved of them, two (interleaved pairs);
        as many examples as the larger of the captioning and the retrieval batch."""
        cfg = self.config
        examples = max(cfg.batch_size, cfg.retrieval_batch_size or cfg.batch_size)
        idx = torch.randint(n_images, (examples,), generator=order).tolist()
        two = torch.rand(examples, generator=order) < cfg.interleaved
        partner = torch.randint(n_images, (examples,), generator=order).tolist()
        return [(i, j) if t else (i,) for i, j, t in zip(idx, partner, two.tolist())]

    def draw_batch_examples(self, n_images: int, order: torch.Generator) -> tuple[list, list]:
        """interleave_per="batch", as the official code draws a step (main.py:433-435): single examples
        for the retrieval losses, and for the captioning loss the first batch_size of them, or, on one
        coin flip a step with probability config.interleaved, their adjacent pairs concatenated (half as
        many sequences, each of two image-caption pairs). Returns (retrieval examples, captioning examples)."""
        cfg = self.config
        examples = max(cfg.batch_size, cfg.retrieval_batch_size or cfg.batch_size)
        singles = [(i,) for i in torch.randint(n_images, (examples,), generator=order).tolist()]
        captioned = singles[:cfg.batch_size]
        if torch.rand(1, generator=order).item() < cfg.interleaved:
            captioned = [captioned[k] + captioned[k + 1] for k in range(0, len(captioned), 2)]
        return singles, captioned

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """The parameters whose gradients are clipped together: the captioning loss trains the image
        bridge, the retrieval losses everything else."""
        bridge = list(self.image_to_lm.parameters())
        return [bridge, [p for p in self.parameters() if all(p is not b for b in bridge)]]

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def caption(self, images, max_new_tokens: int = br.CAPTION_TOKENS, batch_size: int = 256,
                temperature: float = 0.0) -> list[str]:
        """Greedy (or sampled) captions of images (or their features)."""
        features = self.as_features(images)
        texts = []
        for i in range(0, len(features), batch_size):
            batch = br.assemble(self.lm, [[s] for s in self.image_segments(features[i:i + batch_size])], pad_left=True)
            texts += br.generate(self.lm, batch, max_new_tokens, temperature).texts
        return [t.strip() for t in texts]

    @torch.no_grad()
    def log_likelihood(self, contexts: list, continuations: list[str], batch_size: int = 256) -> torch.Tensor:
        """Summed log-probability [N] of each continuation after its interleaved context (ranking answers)."""
        out = []
        for i in range(0, len(contexts), batch_size):
            pairs = zip(contexts[i:i + batch_size], continuations[i:i + batch_size], strict=True)
            batch = br.assemble(self.lm, [[*self.to_segments(c), Text(t, learn=True)] for c, t in pairs])
            _, logits = br.forward(self.lm, batch)
            out.append(br.target_logprobs(logits, batch.targets))
        return torch.cat(out)

    @torch.no_grad()
    def retrieve_images(self, queries: list, candidates, k: int = 5) -> torch.Tensor:
        """Indices [Q, k] of the best candidate images (or features) for each query (str or interleaved list)."""
        return (self.text_retrieval(queries) @ self.image_retrieval(candidates).T).topk(k, dim=1).indices

    @torch.no_grad()
    def retrieve_texts(self, images, candidates: list[str], k: int = 5) -> torch.Tensor:
        """Indices [N, k] of the best candidate texts for each image (or features)."""
        return (self.image_retrieval(images) @ self.text_retrieval(candidates).T).topk(k, dim=1).indices

    @torch.no_grad()
    def generate_interleaved(self, items, candidates, max_new_tokens: int = 48, stop: tuple = (RET,)) -> list:
        """Continue an interleaved input of str and images until a `stop` token (a word, or RET);
        the [RET] the model writes becomes the best-matching image among `candidates` (images or
        features). Returns str pieces and candidate indices, in order."""
        segments = self.to_segments(items)
        ret_id = self.extra.id(RET)
        stop = tuple(ret_id if s == RET else s for s in stop)
        out = br.generate(self.lm, br.assemble(self.lm, [segments], pad_left=True), max_new_tokens,
                          extra=self.extra, stop=stop)
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

    # ------------------------------------------------------------------ sharing (checkpoint.Trained)
    def backbone_record(self) -> tuple[dict, dict]:
        return {"clip": self.clip.name, "lm": self.lm.name}, checkpoint.backbone_dims(self.clip, self.lm)

    @classmethod
    def from_config(cls, config: FromageConfig, backbones: Backbones) -> "Fromage":
        return cls(backbones.clip, backbones.lm, config)
