"""Which source pieces a translation looked at: the cross-attention of the last decoder
layer, averaged over heads, while the model reads its own 1-best output (teacher-forced:
BOS + output, predicting output + EOS). Shown by `mt translate --attention FILE.png` and by
the server's web page; it is what the model attended to, not a word alignment.

`scaled_dot_product_attention` does not return the weights: the last layer's cross-attention
is asked for them (`MultiHeadAttention.attention_weights`) with the arguments its `forward`
received in one teacher-forced pass (caught by a forward pre-hook, by name).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import Tensor

from machine_translation.data.sources import pad_batch


@dataclass
class Alignment:
    source_pieces: list[str]  # S: the source's pieces and EOS
    target_pieces: list[str]  # T: the output's pieces and EOS
    weights: list[list[float]]  # (T, S): row t = attention of target piece t over the source, sums to 1

    def to_dict(self) -> dict:
        return {"source_pieces": self.source_pieces, "target_pieces": self.target_pieces, "weights": self.weights}

    def target_word_of(self, source_word: int) -> int | None:
        """The target word (index among the translation's space-separated words) that attended
        most to the pieces of source word `source_word` (None: the source has no such word).
        Words are counted by SentencePiece's word-start mark; a piece before the first mark
        (Marian's target tag) counts as a word of its own."""
        source, target = word_numbers(self.source_pieces[:-1]), word_numbers(self.target_pieces[:-1])
        columns = [i for i, w in enumerate(source) if w == source_word]
        if not columns or not target:
            return None
        rows = [sum(self.weights[t][i] for i in columns) for t in range(len(target))]
        return target[max(range(len(rows)), key=rows.__getitem__)]


class _Caught(Exception):
    """Ends the teacher-forced pass once the last cross-attention's arguments are caught."""


@torch.inference_mode()
def cross_attention(model, src_ids: list[list[int]], tgt_ids: list[list[int]], bos_id: int, pad_id: int) -> list[Tensor]:
    """src_ids: each encoded source with EOS (S_i); tgt_ids: each output without BOS/EOS
    (T_i - 1). Returns, per pair, the (T_i, S_i) float32 weights of the last decoder layer,
    averaged over heads: one padded teacher-forced pass for them all (PAD is masked in the
    source and comes after every real target piece, which the causal mask keeps unseen)."""
    attn = model.decoder.blocks[-1].cross_attn
    device = next(model.parameters()).device
    signature = inspect.signature(attn.forward)
    caught = {}

    def hook(module, args, kwargs):
        caught.update(signature.bind(*args, **kwargs).arguments)  # query, key, value, attn_mask
        raise _Caught  # the rest of the pass (the last feed-forward, the output layer) is not needed

    handle = attn.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        src = pad_batch(src_ids, pad_id).to(device)  # (B, S)
        tgt = pad_batch([[bos_id] + ids for ids in tgt_ids], pad_id).to(device)  # (B, T)
        model(src, tgt)
    except _Caught:
        pass
    finally:
        handle.remove()
    weights = attn.attention_weights(caught["query"].float(), caught["key"].float(), caught["attn_mask"])  # (B, H, T, S)
    weights = weights.mean(dim=1)  # (B, T, S)
    return [weights[b, : len(t) + 1, : len(s)] for b, (s, t) in enumerate(zip(src_ids, tgt_ids))]


def word_numbers(pieces: list[str]) -> list[int]:
    """The word each SentencePiece piece belongs to (a piece starting with U+2581 starts one)."""
    numbers, word = [], -1
    for i, piece in enumerate(pieces):
        if piece.startswith("\u2581") or i == 0:
            word += 1
        numbers.append(word)
    return numbers


def align(model, src_tokenizer, tgt_tokenizer, src_ids: list[list[int]], tgt_ids: list[list[int]],
          pad_id: int) -> list[Alignment]:
    """The `Alignment` of each (source, output) pair of ids, in one pass (`cross_attention`)."""
    pieces = lambda tok, ids: [tok.id_to_piece(i) for i in ids]  # noqa: E731
    return [Alignment(pieces(src_tokenizer, s), pieces(tgt_tokenizer, t + [tgt_tokenizer.eos_id]),
                      [[round(w, 4) for w in row] for row in weights.tolist()])
            for s, t, weights in zip(src_ids, tgt_ids, cross_attention(model, src_ids, tgt_ids, tgt_tokenizer.bos_id,
                                                                       pad_id))]
