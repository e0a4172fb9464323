"""English->French on Multi30k: mt against a same-size Hugging Face Marian peer, side by side
in one run on this machine (nothing else running).

1. Quality at a fixed budget: `mt train --pair en-fr --preset small --max-minutes M`, then
   the peer trained by mt's Trainer on the same batches, SentencePiece model, schedule and
   budget; both scored with sacreBLEU on test_2016_flickr and test_2017_flickr (greedy and
   beam 4), cased BLEU/chrF/TER and lowercased BLEU.
2. Training tokens/s (real source + target tokens, PAD not counted, the same batches): the
   median over the logged windows of each run. `--mt-precisions fp32 bf16` trains mt once
   per training precision (the first is the run the peer copies; the others go to
   `mt-PRECISION`), each for the same budget, and scores each. `--peer-minutes` gives the
   peer its own budget (its tokens/s needs minutes, its BLEU the full budget).
3. Translation speed on test_2016_flickr, batch 64, greedy and beam 4: mt (each of
   --precisions, one process x 2 threads and 2 processes x 1 thread), the peer's `generate`,
   and CTranslate2 (float32 and int8, 1x2 and 2x1) on the converted peer, medians of --repeats,
   the systems' runs interleaved round by round.

    python benchmarks/mt_en_fr.py --out /tmp/mt-bench --minutes 30
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from machine_translation.base.options import RunOptions
from machine_translation.training.plot import read_log  # a run's train, validation and averaged records

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer  # noqa: E402

TEST_SETS = ("test_2016_flickr", "test_2017_flickr")


def run_mt(out: Path, minutes: float, batch_tokens: int, extra: list[str]) -> float:
    start = time.time()
    subprocess.run(["mt", "train", "--pair", "en-fr", "--preset", "small", "--max-minutes", str(minutes),
                    "--batch-tokens", str(batch_tokens), "--out", str(out), "--overwrite", *extra],
                   check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def score_mt(out: Path) -> dict:
    scores = {}
    for split in TEST_SETS:
        for beam in (1, 4):
            r = subprocess.run(["mt", "evaluate", "--model", str(out), "--split", split, "--beam", str(beam), "--json"],
                               check=True, capture_output=True, text=True)
            scores[f"{split}/beam{beam}"] = json.loads(r.stdout)
    return scores


def train_peer(mt_dir: Path, out: Path, minutes: float, batch_tokens: int, data_dir: str | None):
    """The peer, trained by mt's Trainer with mt's run settings (read from its checkpoint)."""
    from machine_translation.model.directory import load_pretrained
    from machine_translation.training.checkpoints import checkpoint_dirs
    from machine_translation.data.sources import drop_empty, parse_data_spec, read_split
    from machine_translation.base.options import RunOptions, TrainConfig
    from machine_translation.training.runs import TRAIN_STORE
    from machine_translation.data.store import PairStore
    from machine_translation.training.tasks import TranslationTask
    from machine_translation.training.trainer import Trainer

    loaded = load_pretrained(mt_dir)
    training = torch.load(checkpoint_dirs(mt_dir)[-1] / "training_state.pt", weights_only=True)
    from dataclasses import fields
    known = {f.name for f in fields(TrainConfig)}  # a run of an older mt may hold keys since renamed (bf16)
    saved = {k: v for k, v in training["train_config"].items() if k in known}
    cfg = TrainConfig(**{**saved, "max_minutes": minutes, "max_steps": None, "epochs": None})
    opts = RunOptions(out=out, data=parse_data_spec("multi30k", pair="en-fr"), data_dir=data_dir)
    val_src, val_tgt = drop_empty(*read_split(opts.data, "val", opts.pair, data_dir), "val")
    tok, V = loaded.tgt_tokenizer, loaded.config.vocab_size
    max_len = min(opts.max_len, loaded.config.max_positions - 1)
    torch.manual_seed(cfg.seed)
    model = peer.build_marian(loaded.config)
    loaded.model = model
    base = TranslationTask(loaded, PairStore.open(mt_dir / TRAIN_STORE),  # mt's run's own encoded data
                           PairStore.from_pairs(zip(val_src, val_tgt), tok, max_len, "val"), (val_src, val_tgt),
                           batch_tokens, cfg.seed, cfg.label_smoothing, torch.device("cpu"),
                           subword_alpha=0.0)  # the clean batches: subword sampling is mt's own feature
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_log.jsonl").unlink(missing_ok=True)
    trainer = Trainer(peer.MarianTask(base, V, cfg.label_smoothing), model, cfg, out, torch.device("cpu"),
                      model.config.to_dict(), on_best=lambda m, metrics, state: m.save_pretrained(out))
    start = time.time()
    state = trainer.run()
    return time.time() - start, state


def score_peer(peer_dir: Path, tok, data_dir) -> dict:
    from transformers import MarianMTModel

    from machine_translation.data.sources import parse_data_spec, read_split
    from machine_translation.inference.evaluate import score_translations
    model = MarianMTModel.from_pretrained(peer_dir).eval()
    scores = {}
    for split in TEST_SETS:
        src, ref = read_split(parse_data_spec("multi30k"), split, "en-fr", data_dir)
        for beam in (1, 4):
            hyps = peer.generate(model, tok, src, beam, model.config.pad_token_id)
            scores[f"{split}/beam{beam}"] = score_translations(hyps, ref)
    return scores


def speed(mt_dir: Path, peer_dir: Path, work: Path, data_dir, repeats: int, precisions: list[str]) -> dict:
    """Every system's timed runs interleaved: round r times each system once (in reverse
    order on odd rounds), so that the machine's drift over the minutes of the benchmark
    hits every system alike instead of whichever was timed during a slow spell (two runs
    timed one system after the other gave mt beam 4 1.02x and 0.70x CTranslate2's fastest).
    CTranslate2 runs in a process of its own (`_ct2_host`): once its translators exist in a
    process, their thread pools slow PyTorch's multi-threaded work there (measured: mt fp32
    1 x 2 beam 4 fell from 116 to 69 sentences/s)."""
    from transformers import MarianMTModel

    from machine_translation.data.sources import parse_data_spec, read_split
    from machine_translation.base.options import SearchOptions
    from machine_translation.inference.translate import Translator
    torch.set_num_threads(2)
    src, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", data_dir)
    tok = Translator.from_pretrained(mt_dir, "cpu").loaded.tgt_tokenizer
    hf = MarianMTModel.from_pretrained(peer_dir).eval()
    systems = {}
    for precision in precisions:
        suffix = "" if precision == "fp32" else f"-{precision}"
        translator = Translator.from_pretrained(mt_dir, "cpu", precision=precision)  # 1 process x 2 threads
        translator2 = Translator.from_pretrained(mt_dir, "cpu", workers=2, precision=precision)  # 2 x 1 thread
        for beam in (1, 4):
            # the search alone, as the peers run it (no repetition guard or case handling)
            options = SearchOptions(beam=beam, batch_size=64)
            systems[f"mt{suffix}/beam{beam}"] = _timed(lambda s, o=options, t=translator: t.translate(s, o))
            systems[f"mt{suffix}-2x1/beam{beam}"] = _timed(lambda s, o=options, t=translator2: t.translate(s, o))
    for beam in (1, 4):
        systems[f"peer-generate/beam{beam}"] = _timed(lambda s, b=beam: peer.generate(hf, tok, s, b, hf.config.pad_token_id))
    context = multiprocessing.get_context("spawn")
    conn, child_conn = context.Pipe()
    host = context.Process(target=_ct2_host, args=(child_conn, str(peer_dir), str(work), str(mt_dir)), daemon=True)
    host.start()
    for name in conn.recv():  # the host's systems, once its translators are loaded
        systems[name] = lambda s, n=name: _remote(conn, n, s)
    try:
        return time_systems(systems, src, tok, repeats)
    finally:
        if host.is_alive():  # a host that died has already said why on stderr
            conn.send(None)
        host.join(timeout=60)


def _timed(fn):
    """fn(sentences) -> hypotheses, made to return (hypotheses, seconds)."""
    def timed(sentences):
        start = time.perf_counter()
        hyps = fn(sentences)
        return hyps, time.perf_counter() - start
    return timed


def _remote(conn, name: str, sentences: list[str]):
    conn.send((name, sentences))
    return conn.recv()  # (hypotheses, seconds), timed in the host


def _ct2_host(conn, peer_dir: str, work: str, mt_dir: str) -> None:
    """CTranslate2 (float32 and int8, 1 x 2 and 2 x 1) on the converted peer, in its own
    process: sends its systems' names, then answers (name, sentences) with (hypotheses,
    seconds) until it receives None."""
    import ctranslate2

    from machine_translation.inference.translate import Translator
    tok = Translator.from_pretrained(mt_dir, "cpu").loaded.tgt_tokenizer
    systems = {}
    for quant in ("float32", "int8"):
        ct2_dir = Path(work) / f"ct2-{quant}"
        peer.convert_to_ctranslate2(Path(peer_dir), ct2_dir, tok, None if quant == "float32" else quant)
        for inter, intra in ((1, 2), (2, 1)):
            t = ctranslate2.Translator(str(ct2_dir), device="cpu", inter_threads=inter, intra_threads=intra,
                                       compute_type=quant)
            for beam in (1, 4):
                systems[f"ct2-{quant}-{inter}x{intra}/beam{beam}"] = _timed(
                    lambda s, t=t, b=beam: peer.ct2_translate(t, tok, s, b))
    conn.send(list(systems))
    while (request := conn.recv()) is not None:
        name, sentences = request
        conn.send(systems[name](sentences))


def time_systems(systems: dict, src: list[str], tok, repeats: int) -> dict:
    """Medians of `repeats` timed runs per system, the runs interleaved (see `speed`)."""
    names = list(systems)
    # Warm-up: one whole pass per system, its speed kept as `first_pass` (close to what a
    # fresh process pays; for a pool, its start too). A pool's second worker may still be
    # loading the model while the first batches run, and oneDNN builds a kernel for each new
    # matrix shape it meets (0.3-0.5 ms each, a few hundred shapes per process: every row
    # count of a shrinking batch), so a shorter warm-up left mt's 2 x 1 rows' first timed
    # round at 0.6-0.8x of the next ones.
    first_pass = {}
    for name in names:
        _, seconds = systems[name](src)
        first_pass[name] = round(len(src) / seconds, 1)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            time.sleep(0.5)  # let the last system's idle threads stop spinning
            hyps, seconds = systems[name](src)
            runs[name].append((len(src) / seconds, sum(len(tok.encode(h)) + 1 for h in hyps) / seconds))
            print(name, f"round {r + 1}: {runs[name][-1][0]:.1f} sentences/s", file=sys.stderr)
    return {name: {"sentences_per_s": round(statistics.median(r[0] for r in rs), 1),
                   "tgt_tokens_per_s": round(statistics.median(r[1] for r in rs), 0),
                   "runs": [round(r[0], 1) for r in rs], "first_pass": first_pass[name]} for name, rs in runs.items()}


def plot(runs: dict[str, Path], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, d in runs.items():
        if not (d / "train_log.jsonl").exists():  # e.g. --skip peer
            continue
        train, evals, averaged = (list(records.values()) for records in read_log(d))
        line, = ax1.plot([r["elapsed"] / 60 for r in train], [r["loss"] for r in train], label=name)
        ax2.plot([r["elapsed"] / 60 for r in evals], [r["val_bleu"] for r in evals], marker="o", label=name)
        for r in averaged:  # the end-of-run average of the last K checkpoints, kept only if better
            ax2.plot([r["elapsed"] / 60], [r["val_bleu"]], "*", ms=10, color=line.get_color(),
                     label=f"{name}: average of its last {r['averaged_checkpoints']}")
    ax1.set(xlabel="minutes", ylabel="training loss (label-smoothed)", title="Training loss")
    ax2.set(xlabel="minutes", ylabel="val BLEU (greedy, whole val split)", title="Validation BLEU")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/mt-bench"))
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--batch-tokens", type=int, default=RunOptions.batch_tokens, help="default: mt train's")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip", nargs="*", default=[], choices=["mt", "peer", "speed"])
    p.add_argument("--precisions", nargs="*", default=["fp32", "bf16", "int8"], help="mt's rows in the speed part")
    p.add_argument("--mt-precisions", nargs="+", default=["auto"],
                   help="mt train --precision of each mt run (default: auto, mt's own default)")
    p.add_argument("--peer-minutes", type=float, default=None, help="the peer's budget (default: --minutes)")
    args, extra = p.parse_known_args()
    mt_dir, peer_dir = args.out / "mt", args.out / "peer"
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    args.out.mkdir(parents=True, exist_ok=True)
    mt_dirs = {"mt": mt_dir, **{f"mt-{p}": args.out / f"mt-{p}" for p in args.mt_precisions[1:]}}
    if "mt" not in args.skip:
        results["minutes"] = args.minutes  # (what benchmarks/charts.py puts on its x axis)
        for (name, d), precision in zip(mt_dirs.items(), args.mt_precisions):
            wall = run_mt(d, args.minutes, args.batch_tokens, [*extra, "--precision", precision])
            results[f"{name}_train_wall_s"] = round(wall, 1)
            results[f"{name}_precision"] = precision
            results[f"{name}_scores"] = score_mt(d)
    if "peer" not in args.skip:
        wall, _ = train_peer(mt_dir, peer_dir, args.peer_minutes or args.minutes, args.batch_tokens, args.data_dir)
        results["peer_train_wall_s"] = round(wall, 1)
        results["peer_minutes"] = args.peer_minutes or args.minutes
        from machine_translation.model.directory import load_pretrained
        results["peer_scores"] = score_peer(peer_dir, load_pretrained(mt_dir).tgt_tokenizer, args.data_dir)
    for name, d in (*mt_dirs.items(), ("peer", peer_dir)):
        if (d / "train_log.jsonl").exists():
            rates = [r["tokens_per_s"] for r in read_log(d)[0].values()]  # the logged training windows
            results[f"{name}_train_tokens_per_s_median"] = round(statistics.median(rates[1:] or rates), 0)
    if "speed" not in args.skip:
        results["speed"] = speed(mt_dir, peer_dir, args.out, args.data_dir, args.repeats, args.precisions)
    plot({**{n.replace("-", " "): d for n, d in mt_dirs.items()}, "Marian peer": peer_dir},
         args.out / "training_curve.png")
    import os
    import platform
    from machine_translation.inference.precision import cpu_flags
    model_name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                      platform.processor() or platform.machine())
    results["machine"] = {"cpus": os.cpu_count(), "processor": model_name, "torch": torch.__version__,
                          "flags": sorted(cpu_flags() & {"amx_bf16", "amx_int8", "amx_tile", "avx512_bf16",
                                                         "avx512_vnni", "avx_vnni", "avx512f", "avx2"}),
                          "date": time.strftime("%Y-%m-%d %H:%M")}
    results_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
