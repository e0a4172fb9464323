"""Tasks the trainer runs: translation (teacher forcing on sentence pairs) and, with the same
loop, language modelling. A task owns its batch type, its batches, its loss and its validation."""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from machine_translation.model.directory import LoadedModel
from machine_translation.data.sources import BUCKET_WIDTH, Batch, Ragged, collate, ragged, token_batches
from machine_translation.base.errors import ConfigError, DataError
from machine_translation.inference.evaluate import corpus_bleu
from machine_translation.training.fused_loss import label_smoothed_cross_entropy
from machine_translation.base.options import AS_IS, SUBWORD_ALPHA, SearchOptions
from machine_translation.data.store import PairStore
from machine_translation.inference.translate import Translator


def sequence_loss(logits: Tensor, labels: Tensor, pad_id: int, label_smoothing: float = 0.0,
                  reduction: str = "mean") -> Tensor:
    """Cross-entropy over non-PAD target tokens: logits (B, T, V), labels (B, T). The logits are
    a model's output for this loss: `backward()` reuses their memory for the gradient."""
    V = logits.size(-1)
    return label_smoothed_cross_entropy(logits.reshape(-1, V).float(), labels.reshape(-1),  # (B*T, V), (B*T,)
                                        pad_id, label_smoothing, reduction, reuse_logits=True)


@dataclass
class TranslationBatch:
    src_ids: Tensor  # (B, S) source + EOS, PAD on the right; on the device
    tgt_input_ids: Tensor  # (B, T) <bos> y
    labels: Tensor  # (B, T) y <eos>
    n_tokens: int  # real (non-PAD) source and target tokens, for tokens/s
    n_targets: int  # non-PAD target tokens the loss is summed over


@dataclass
class LMBatch:
    input_ids: Tensor  # (B, T) a block of the token stream; on the device
    labels: Tensor  # (B, T) the same block shifted by one
    n_tokens: int
    n_targets: int


# Validation BLEU (greedy) is computed on up to this many val sentences: all of Multi30k's
# 1,014. A 400-sentence sample picked another checkpoint than the whole set in a 30-minute run
# (benchmarks/selection_noise.py, docs/benchmarks.md, Why the defaults); the whole set costs about 2% of training.
VAL_BLEU_SENTENCES = 1500


def resegment(rows: Ragged, tokenizer, alpha: float, draws: np.ndarray, max_len: int) -> Ragged:
    """Subword regularisation of stored rows: each row's text segmented anew by sampling
    (`draws`: one uniform in [0, 1) per row); a sample longer than `max_len` keeps the stored
    segmentation."""
    offsets, values = rows
    out = []
    for k, u in enumerate(draws):
        ids = values[offsets[k] : offsets[k + 1]].tolist()
        sampled = tokenizer.sample_encode(tokenizer.decode(ids), alpha, float(u))
        out.append(sampled if 0 < len(sampled) <= max_len else ids)
    return ragged(out)


class TranslationTask:
    """Teacher forcing on the pairs of a token store: length-bucketed token-budget batches,
    drawn from (seed, epoch) so a resumed run sees the same batches. With `subword_alpha`,
    every training sentence is segmented anew from a seed of (seed, epoch, batch, row); None
    (the default): `SUBWORD_ALPHA` where both tokenizers can sample, else off."""

    def __init__(self, loaded: LoadedModel, train: PairStore, val: PairStore, val_texts: tuple[list[str], list[str]],
                 batch_tokens: int, seed: int, label_smoothing: float, device: torch.device,
                 val_bleu_sentences: int = VAL_BLEU_SENTENCES, shard: tuple[int, int] = (0, 1),
                 subword_alpha: float | None = None, max_len: int | None = None):
        self.loaded, self.device = loaded, device
        self.rank, self.world = shard  # under torchrun, each rank takes its slice of every global batch
        self.train, self.val = train, val
        self.batch_tokens, self.seed, self.label_smoothing = batch_tokens, seed, label_smoothing
        can_sample = all(getattr(t, "can_sample", False) for t in (loaded.src_tokenizer, loaded.tgt_tokenizer))
        if subword_alpha is None:
            subword_alpha = SUBWORD_ALPHA if can_sample else 0.0
        elif subword_alpha and not can_sample:
            raise ConfigError("--subword-alpha samples segmentations, which needs a unigram SentencePiece model; "
                              "this run's tokenizer has none")
        self.subword_alpha = subword_alpha
        self.max_len = max_len or loaded.config.max_positions - 1
        self.pad = loaded.config.pad_id
        self.bos, self.eos = loaded.tgt_tokenizer.bos_id, loaded.tgt_tokenizer.eos_id
        self._steps_per_epoch = len(token_batches(train.lengths, batch_tokens, seed, 0))
        pick = sorted(random.Random(seed).sample(range(len(val_texts[0])), min(val_bleu_sentences, len(val_texts[0]))))
        self.bleu_src = [val_texts[0][i] for i in pick]
        self.bleu_ref = [val_texts[1][i] for i in pick]
        self._val_batches = [self._batch(val, b) for b in token_batches(val.lengths, batch_tokens, 0, 0)]

    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch

    def batching(self) -> dict:
        return {"seed": self.seed, "batch_tokens": self.batch_tokens, "bucket_width": BUCKET_WIDTH,
                "subword_alpha": self.subword_alpha}

    def _batch(self, store: PairStore, batch: Batch, shard: tuple[int, int] = (0, 1),
               sample: tuple[int, int] | None = None) -> TranslationBatch:
        """This rank's slice of `batch`; `sample` = (epoch, batch number) resegments it."""
        rank, world = shard
        src, tgt = store.rows(batch.indices[rank::world])
        length = batch.length
        if sample is not None and self.subword_alpha:
            bits = np.random.SeedSequence([self.seed, *sample]).generate_state(2 * len(batch.indices))
            draws = ((bits + 0.5) / 2**32).reshape(-1, 2)[rank::world]  # (rows of this rank, 2): uniforms
            src = resegment(src, self.loaded.src_tokenizer, self.subword_alpha, draws[:, 0], self.max_len)
            tgt = resegment(tgt, self.loaded.tgt_tokenizer, self.subword_alpha, draws[:, 1], self.max_len)
            longest = int(max(np.diff(src[0]).max(), np.diff(tgt[0]).max())) + 1  # with EOS / BOS
            length = max(length, -(-longest // BUCKET_WIDTH) * BUCKET_WIDTH)  # samples run longer: next bound
        tensors, n_tokens, n_targets = collate(src, tgt, self.pad, self.bos, self.eos, length)
        return TranslationBatch(*(x.to(self.device) for x in tensors), n_tokens, n_targets)

    def batches(self, epoch: int, start: int) -> Iterator[TranslationBatch]:
        for i, batch in enumerate(token_batches(self.train.lengths, self.batch_tokens, self.seed, epoch)[start:],
                                  start):
            yield self._batch(self.train, batch, (self.rank, self.world), (epoch, i))  # this rank's slice of it

    def loss_sum(self, model: nn.Module, batch: TranslationBatch) -> Tensor:
        logits = model(batch.src_ids, batch.tgt_input_ids)  # (B, T, V)
        return sequence_loss(logits, batch.labels, self.pad, self.label_smoothing, reduction="sum")

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        model.eval()
        total, count = 0.0, 0
        for batch in self._val_batches:
            logits = model(batch.src_ids, batch.tgt_input_ids)  # (B, T, V)
            total += sequence_loss(logits, batch.labels, self.pad, reduction="sum").item()
            count += batch.n_targets
        translator = Translator(self.loaded, self.device)  # the decoding path of `mt evaluate`
        # greedy, without the repetition guard or case handling (cheap, comparable across runs),
        # but never PAD where the model bans it (an imported Marian model)
        hyps = translator.translate(self.bleu_src, SearchOptions(beam=1, suppress_pad=translator.defaults.suppress_pad),
                                    AS_IS)  # one validation line, one sentence: as the model was trained
        bleu = corpus_bleu(hyps, self.bleu_ref)
        return {"val_loss": total / count, "val_bleu": bleu, "val_bleu_sentences": len(self.bleu_src), "score": bleu}


class LanguageModelTask:
    """Next-token prediction on contiguous blocks of a token stream (input and target shifted by one).

    Training batches are blocks at random offsets, drawn from a generator seeded by
    (seed, epoch), so a resumed run sees the same batches; validation covers the whole
    held-out stream in non-overlapping blocks. The id streams may be memory-mapped files.
    """

    def __init__(self, train_ids: np.ndarray, val_ids: np.ndarray, block_size: int, batch_size: int, seed: int,
                 device: torch.device, shard: tuple[int, int] = (0, 1)):
        if len(train_ids) <= block_size + 1 or len(val_ids) <= block_size + 1:
            raise DataError(f"the text is too short for --block-size {block_size}: need more than "
                            f"{block_size + 1} tokens in both the training and the validation part")
        self.train_ids, self.val_ids = train_ids, val_ids  # (N,), (M,)
        self.block_size, self.batch_size, self.seed, self.device = block_size, batch_size, seed, device
        self.rank, self.world = shard
        self._steps_per_epoch = max(1, len(train_ids) // (block_size * batch_size))

    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch

    def batching(self) -> dict:
        return {"seed": self.seed, "block_size": self.block_size, "batch_size": self.batch_size}

    def batches(self, epoch: int, start: int) -> Iterator[LMBatch]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        offsets = torch.randint(0, len(self.train_ids) - self.block_size - 1,
                                (self._steps_per_epoch, self.batch_size), generator=g)  # (steps, B)
        span = torch.arange(self.block_size + 1)
        for row in offsets[start:, self.rank :: self.world]:
            x, y = self._blocks(self.train_ids, row[:, None] + span)
            yield LMBatch(x, y, x.numel(), y.numel())

    def _blocks(self, ids: np.ndarray, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets (b, block) of the blocks at `index` (b, block + 1)."""
        blocks = torch.from_numpy(ids[index.numpy()].astype(np.int64))  # (b, block + 1)
        return blocks[:, :-1].to(self.device), blocks[:, 1:].to(self.device)

    def loss_sum(self, model: nn.Module, batch: LMBatch) -> Tensor:
        return sequence_loss(model(batch.input_ids), batch.labels, pad_id=-100, reduction="sum")

    @torch.no_grad()
    def validate(self, model: nn.Module, batch_blocks: int = 64) -> dict:
        model.eval()
        n_blocks = (len(self.val_ids) - 1) // self.block_size
        total = 0.0
        for first in range(0, n_blocks, batch_blocks):
            idx = torch.arange(first, min(first + batch_blocks, n_blocks))[:, None] * self.block_size
            x, y = self._blocks(self.val_ids, idx + torch.arange(self.block_size + 1))
            total += sequence_loss(model(x), y, pad_id=-100, reduction="sum").item()
        val_loss = total / (n_blocks * self.block_size)
        return {"val_loss": val_loss, "score": -val_loss}
