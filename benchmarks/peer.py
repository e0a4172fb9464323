"""The same-size peer for the en-fr benchmark: Hugging Face `MarianMTModel` built from a
config matching mt's (no pretrained weights), trained by mt's own Trainer on mt's batches,
SentencePiece model, schedule and budget, and translated with `generate` or with
CTranslate2 after conversion. Needs the `bench` extra (transformers, ctranslate2).

Marian conventions are kept so CTranslate2 converts the model faithfully: PAD is an extra
last vocabulary entry (id V) and the decoder starts from it; mt's ids 0..V-1 are unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from machine_translation.inference.evaluate import corpus_bleu
from machine_translation.model.transformer import ModelConfig
from machine_translation.training.tasks import TranslationBatch, TranslationTask, sequence_loss


def build_marian(cfg: ModelConfig):
    from transformers import MarianConfig, MarianMTModel

    V = cfg.vocab_size
    config = MarianConfig(
        vocab_size=V + 1, decoder_vocab_size=V + 1, d_model=cfg.d_model, encoder_layers=cfg.n_encoder_layers,
        decoder_layers=cfg.n_decoder_layers, encoder_attention_heads=cfg.n_heads, decoder_attention_heads=cfg.n_heads,
        encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff, dropout=cfg.dropout, attention_dropout=0.0,
        activation_dropout=0.0, activation_function="relu", max_position_embeddings=cfg.max_positions,
        scale_embedding=True, pad_token_id=V, decoder_start_token_id=V, eos_token_id=3, forced_eos_token_id=3,
        bos_token_id=None, share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
    )
    return MarianMTModel(config)


def to_marian(src: torch.Tensor, tgt_in: torch.Tensor, labels: torch.Tensor, pad: int, V: int):
    """mt's batch (PAD 0, decoder input starting with BOS) -> Marian's (PAD V, starting with V)."""
    src = src.masked_fill(src == pad, V)
    tgt_in = tgt_in.masked_fill(tgt_in == pad, V)
    tgt_in[:, 0] = V
    return src, tgt_in, labels.masked_fill(labels == pad, -100)


class MarianTask:
    """mt's TranslationTask (same batches) with the peer's forward pass and `generate`."""

    def __init__(self, base: TranslationTask, V: int, label_smoothing: float):
        self.base, self.V, self.label_smoothing = base, V, label_smoothing

    def steps_per_epoch(self) -> int:
        return self.base.steps_per_epoch()

    def batching(self) -> dict:
        return self.base.batching()

    def batches(self, epoch: int, start: int):
        for b in self.base.batches(epoch, start):
            src, tgt_in, labels = to_marian(b.src_ids, b.tgt_input_ids, b.labels, self.base.pad, self.V)
            yield TranslationBatch(src, tgt_in, labels, b.n_tokens, b.n_targets)

    def loss_sum(self, model: nn.Module, batch: TranslationBatch) -> torch.Tensor:
        src = batch.src_ids
        logits = model(input_ids=src, attention_mask=src != self.V, decoder_input_ids=batch.tgt_input_ids).logits
        return sequence_loss(logits[..., : self.V], batch.labels, -100, self.label_smoothing, reduction="sum")

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        model.eval()
        hyps = generate(model, self.base.loaded.src_tokenizer, self.base.bleu_src, beam=1, V=self.V)
        bleu = corpus_bleu(hyps, self.base.bleu_ref)
        return {"val_bleu": bleu, "score": bleu}


@torch.inference_mode()
def generate(model, tok, sentences: list[str], beam: int, V: int, batch_size: int = 64) -> list[str]:
    """Translate with `generate`, batched by length like mt; output in input order."""
    encoded = [tok.encode(s)[: model.config.max_position_embeddings - 1] + [tok.eos_id] for s in sentences]
    out = [""] * len(sentences)
    order = sorted(range(len(sentences)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        src = torch.full((len(idx), width), V)
        for row, i in enumerate(idx):
            src[row, : len(encoded[i])] = torch.tensor(encoded[i])
        max_new = min(int(width * 1.5 + 10), model.config.max_position_embeddings - 1)
        gen = model.generate(input_ids=src, attention_mask=src != V, num_beams=beam, max_new_tokens=max_new,
                             do_sample=False, length_penalty=1.0, early_stopping=True)
        for row, i in enumerate(idx):
            out[i] = tok.decode([t for t in gen[row].tolist() if t < V])
    return out


def convert_to_ctranslate2(hf_dir, ct2_dir, tok, quantization: str | None) -> None:
    """Convert the peer with CTranslate2's Transformers converter; the vocabulary comes from mt's SentencePiece."""
    from ctranslate2.converters import TransformersConverter

    class PieceVocabulary:  # what the converter reads of a Hugging Face tokenizer
        eos_token, unk_token = "<eos>", "<unk>"

        def get_vocab(self):
            pieces = {tok.id_to_piece(i): i for i in range(tok.vocab_size)}
            pieces["<spm_pad>"] = pieces.pop("<pad>")  # id 0; "<pad>" is Marian's extra last entry
            return {**pieces, "<pad>": tok.vocab_size}

    class Converter(TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return PieceVocabulary()

    Converter(str(hf_dir)).convert(str(ct2_dir), quantization=quantization, force=True)


def ct2_translate(translator, tok, sentences: list[str], beam: int, batch_size: int = 64) -> list[str]:
    """One call for the whole set: CTranslate2 sorts by length, batches, and spreads batches over its translators."""
    encoded = [[tok.id_to_piece(i) for i in tok.encode(s)] + ["<eos>"] for s in sentences]
    longest = max(map(len, encoded))
    results = translator.translate_batch(encoded, beam_size=beam, max_batch_size=batch_size,
                                         max_decoding_length=int(longest * 1.5 + 10), length_penalty=1.0)
    return [tok._sp.decode_pieces(r.hypotheses[0]) for r in results]
