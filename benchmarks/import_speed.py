"""Translation speed at OPUS-MT's size, three engines on the same weights: an
opus-mt-en-fr-shaped Marian model (6+6 layers, d_model 512, FFN 2048, 8 heads, vocabulary
59,514, swish, shared and tied embeddings; random weights) saved by `transformers`, then
- mt's own engine after `mt import` (fp32, bf16, int8; 1 process x 2 threads and 2 x 1),
- Hugging Face `generate` (2 threads),
- CTranslate2 on the copy its own `ct2-transformers-converter` makes (float32, int8; 1 x 2 and 2 x 1),
greedy and beam 4, batches of 64 test_2016_flickr sources. Random weights rarely emit EOS,
so EOS's output bias is set to -1e4: every engine decodes exactly `--max-length - 1` tokens
per sentence (EOS forced at the limit) and tokens/s compare like with like (checked).
Medians of --repeats rounds, the systems interleaved round by round, after a warm-up pass.

    MT_DATA_DIR=../shared/data python benchmarks/import_speed.py --out /tmp/opus-shaped
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

VOCAB, D, FFN, HEADS, LAYERS = 59_514, 512, 2048, 8, 6


def make_model(out: Path, data_dir: str | None) -> Path:
    """The opus-mt-en-fr-shaped HF directory (once)."""
    import sentencepiece as spm
    import transformers

    from machine_translation.data.sources import parse_data_spec, read_split
    hf = out / "hf"
    if (hf / "model.safetensors").is_file():
        return hf
    hf.mkdir(parents=True, exist_ok=True)
    src, tgt = read_split(parse_data_spec("multi30k"), "train", "en-fr", data_dir)
    for name, lines in (("source.spm", src), ("target.spm", tgt)):
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(hf / name), vocab_size=8000, hard_vocab_limit=False,
                                       model_type="unigram", character_coverage=1.0, minloglevel=2, unk_id=0,
                                       bos_id=-1, eos_id=1, pad_id=-1, unk_piece="<unk>", eos_piece="</s>")
        (hf / f"{name}.model").rename(hf / name)
    pieces = set()
    for name in ("source.spm", "target.spm"):
        sp = spm.SentencePieceProcessor(model_file=str(hf / name))
        pieces |= {sp.id_to_piece(i) for i in range(sp.get_piece_size())} - {"<unk>", "</s>"}
    pieces = sorted(pieces)
    random.Random(0).shuffle(pieces)
    fill = [f"<unused{i}>" for i in range(VOCAB - 3 - len(pieces))]
    vocab = {p: i for i, p in enumerate(["</s>", "<unk>", *pieces, *fill, "<pad>"])}
    (hf / "vocab.json").write_text(json.dumps(vocab))
    pad = VOCAB - 1
    config = transformers.MarianConfig(
        vocab_size=VOCAB, d_model=D, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS, encoder_ffn_dim=FFN, decoder_ffn_dim=FFN, max_position_embeddings=512,
        activation_function="swish", pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0,
        forced_eos_token_id=0, scale_embedding=True, share_encoder_decoder_embeddings=True)
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias[0, 0] = -1e4  # EOS only where forced: every engine decodes the same lengths
    model.save_pretrained(hf)
    transformers.MarianTokenizer(str(hf / "source.spm"), str(hf / "target.spm"), str(hf / "vocab.json")).save_pretrained(hf)
    return hf


def systems(hf: Path, mt_dir: Path, ct2_dirs: dict[str, Path], beam: int, max_length: int) -> dict:
    """name -> fn(sentences) -> number of target tokens decoded (EOS included)."""
    import ctranslate2
    import transformers

    from machine_translation.inference.translate import Translator
    out = {}
    tok = transformers.MarianTokenizer.from_pretrained(hf)
    model = transformers.MarianMTModel.from_pretrained(hf).eval()

    def hf_generate(sentences):
        total = 0
        for i in range(0, len(sentences), 64):
            batch = tok(sentences[i : i + 64], return_tensors="pt", padding=True)
            with torch.inference_mode():
                seqs = model.generate(**batch, num_beams=beam, max_length=max_length, do_sample=False)
            total += int((seqs[:, 1:] != model.config.pad_token_id).sum())
        return total
    out[f"HF generate/beam{beam}"] = hf_generate
    for precision in ("fp32", "bf16", "int8"):
        for workers in (1, 2):
            tr = Translator.from_pretrained(mt_dir, "cpu", workers=workers, precision=precision)
            options = tr.defaults.updated(beam=beam, batch_size=64, max_len_a=0.0, max_len_b=max_length - 1)
            out[f"mt {precision} {'2x1' if workers == 2 else '1x2'}/beam{beam}"] = (
                lambda s, t=tr, o=options: sum(len(h[0].tokens) + 1 for h in t._search(s, o)))
    for quant, path in ct2_dirs.items():
        for inter, intra in ((1, 2), (2, 1)):
            ct = ctranslate2.Translator(str(path), device="cpu", inter_threads=inter, intra_threads=intra,
                                        compute_type=quant)

            def ct2(sentences, ct=ct):
                tokens = [tok.convert_ids_to_tokens(tok(s)["input_ids"]) for s in sentences]
                # (CTranslate2's converter drops Marian's PAD from the vocabulary: nothing to ban)
                results = ct.translate_batch(tokens, beam_size=beam, max_batch_size=64,
                                             max_decoding_length=max_length - 1)
                return sum(min(len(r.hypotheses[0]) + 1, max_length - 1) for r in results)  # (its steps)
            out[f"CTranslate2 {quant} {inter}x{intra}/beam{beam}"] = ct2
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/opus-shaped"))
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--max-length", type=int, default=32, help="generate()'s, counting the decoder's start")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    hf = make_model(args.out, args.data_dir)
    mt_dir = args.out / "mt"
    if not (mt_dir / "config.json").is_file():
        subprocess.run(["mt", "import", str(hf), "--out", str(mt_dir), "--pair", "en-fr"], check=True)
    ct2_dirs = {}
    for quant in ("float32", "int8"):
        ct2_dirs[quant] = args.out / f"ct2-{quant}"
        if not ct2_dirs[quant].is_dir():
            subprocess.run(["ct2-transformers-converter", "--model", str(hf), "--output_dir", str(ct2_dirs[quant]),
                            "--quantization", quant], check=True, stdout=subprocess.DEVNULL)
    from machine_translation.data.sources import parse_data_spec, read_split
    src, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", args.data_dir)
    src = src[: args.sentences]
    expected = len(src) * (args.max_length - 1)
    results = {}
    for beam in args.beams:
        timed = systems(hf, mt_dir, ct2_dirs, beam, args.max_length)
        rates: dict[str, list[float]] = {name: [] for name in timed}
        for name, fn in timed.items():  # warm-up, and the check that every engine decodes the same lengths
            tokens = fn(src)
            if tokens != expected:
                print(f"{name}: {tokens} tokens decoded, not {expected}", file=sys.stderr)
        for r in range(args.repeats):
            for name in timed if r % 2 == 0 else list(timed)[::-1]:
                time.sleep(0.5)
                start = time.perf_counter()
                tokens = timed[name](src)
                rates[name].append(tokens / (time.perf_counter() - start))
                print(f"{name} round {r + 1}: {rates[name][-1]:.0f} tokens/s", file=sys.stderr)
        results |= {name: round(statistics.median(v), 1) for name, v in rates.items()}
    from machine_translation.inference.precision import cpu_flags
    results["machine"] = {"flags": sorted(cpu_flags() & {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni",
                                                         "avx_vnni", "avx512f", "avx2"}),
                          "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
