"""Load on `mt serve`: the 1,000 sentences of test_2016_flickr as single-sentence LibreTranslate
requests from C = 1, 8 and 32 concurrent clients (a bounded asyncio load generator, httpx, on
127.0.0.1 only), then a soak to request 10,000 to see whether the server's memory grows; and
the same sentences through the offline path in the same run, as the reference.

Reports requests/s, sentences/s, p50/p95/p99 latency, errors and the batch-size histogram
(from /health) per C, the offline sentences/s (`mt translate --input`, wall time including
its start, and the Translator alone), and the server's RSS after request 1,000 and 10,000.

    python benchmarks/serve_load.py --model /tmp/bench30/mt --out /tmp/serve_load.json
    python benchmarks/serve_load.py --url http://127.0.0.1:5000 --out /tmp/other.json   # any LibreTranslate-compatible server
    python benchmarks/serve_load.py --model /tmp/bench30/mt --ratio-runs 5   # C = 32 against offline, 5 pairs

With --url, the server at that address is loaded as it is (no offline reference, no soak);
the batch sizes are reported only by servers whose /health gives them (mt's).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def start_server(model: str, threads: int, extra: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "machine_translation", "serve", "--model", model, "--port", "0",
                             "--host", "127.0.0.1", "--threads", str(threads), *extra],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:  # then its log (an access line per request) is read on, so a full pipe never blocks it
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def histogram_diff(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


async def batch_sizes(client) -> dict:
    """mt's batch-size histogram from /health; {} from another server."""
    import httpx
    try:
        return (await client.get("/health")).json()["models"][0]["batch_sizes"]
    except (ValueError, KeyError, IndexError, TypeError, httpx.HTTPError):
        return {}


async def load(url: str, sentences: list[str], concurrency: int, time_limit: float) -> dict:
    """Each of C clients sends one sentence per request until all are sent (or the time is up)."""
    import httpx

    todo = list(enumerate(sentences))
    latencies, errors, answers = [], 0, {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    deadline = time.perf_counter() + time_limit
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        async def worker():
            nonlocal errors
            while todo and time.perf_counter() < deadline:
                i, sentence = todo.pop(0)
                t = time.perf_counter()
                try:
                    r = await client.post("/translate", json={"q": sentence, "source": "en", "target": "fr"})
                    if r.status_code == 200:
                        answers[i] = r.json()["translatedText"]
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        before = await batch_sizes(client)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        after = await batch_sizes(client)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "requests_per_s": round(len(latencies) / wall, 1), "sentences_per_s": round(len(answers) / wall, 1),
            "p50_ms": round(1000 * q[49], 1), "p95_ms": round(1000 * q[94], 1), "p99_ms": round(1000 * q[98], 1),
            "batch_sizes": histogram_diff(before, after), "answers": answers}


def offline(model: str, sentences: list[str], threads: int) -> dict:
    """The same sentences without the server: `mt translate --input` (wall time with its
    start), and the Translator alone (what the server's batches compete with)."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.en"
        src.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "machine_translation", "translate", "--model", model,
                              "--input", str(src), "--threads", str(threads)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
        cli_wall = time.perf_counter() - t
    import torch

    from machine_translation.inference.translate import Translator
    torch.set_num_threads(threads)
    translator = Translator.from_pretrained(model, "cpu")
    translator.translate(sentences[:64])  # warm-up
    t = time.perf_counter()
    translator.translate(sentences)
    api_wall = time.perf_counter() - t
    return {"cli_sentences_per_s": round(len(sentences) / cli_wall, 1),
            "translator_sentences_per_s": round(len(sentences) / api_wall, 1), "translations": out}


def compare_observability(args, sentences: list[str], extra: list[str]) -> None:
    """C = 32 with the access log and metrics off, then on, N times in turn (a fresh server
    each run): the cost of what an operator watches, as medians and the runs' spread."""
    settings = {"off": ["--no-access-log"], "on": ["--access-log", "--metrics"]}
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for run in range(args.observability_runs):
        for name, flags in settings.items():
            proc, url = start_server(args.model, args.threads, extra + flags)
            try:
                r = asyncio.run(load(url, sentences, 32, args.time_limit))
            finally:
                proc.terminate()
                proc.wait(60)
            rates[name].append(r["sentences_per_s"])
            print(f"run {run + 1} {name}: {r['sentences_per_s']} sentences/s", file=sys.stderr)
    report = {name: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
              for name, v in rates.items()}
    report["on_over_off"] = round(report["on"]["median"] / report["off"]["median"], 3)
    report.update(model=args.model, threads=args.threads, date=time.strftime("%Y-%m-%d %H:%M"))
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


def compare_offline(args, sentences: list[str], extra: list[str]) -> None:
    """N times in turn: `mt translate --input` on the sentences, then a fresh server at C = 32
    on them: the ratio of each pair, and their median and spread (this machine's noise is
    about 10% from run to run, so one pair says little)."""
    runs = []
    for run in range(args.ratio_runs):
        reference = offline(args.model, sentences, args.threads)
        proc, url = start_server(args.model, args.threads, extra)
        try:
            asyncio.run(load(url, sentences[:64], 8, args.time_limit))  # warm-up
            r = asyncio.run(load(url, sentences, 32, args.time_limit))
        finally:
            proc.terminate()
            proc.wait(60)
        same = sum(r["answers"].get(i) == t for i, t in enumerate(reference["translations"]))
        runs.append({"offline": reference["cli_sentences_per_s"], "served": r["sentences_per_s"],
                     "ratio": round(r["sentences_per_s"] / reference["cli_sentences_per_s"], 3),
                     "p99_ms": r["p99_ms"], "same_as_offline": same, "batch_sizes": r["batch_sizes"]})
        print(json.dumps(runs[-1]), file=sys.stderr)
    ratios = [r["ratio"] for r in runs]
    report = {"runs": runs, "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
              "max_ratio": max(ratios), "model": args.model, "threads": args.threads, "server_flags": extra,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


def load_url(args, sentences: list[str]) -> None:
    """Each C against a server already running at args.url."""
    results = []
    for c in args.concurrency:
        r = asyncio.run(load(args.url, sentences, c, args.time_limit))
        r.pop("answers")
        results.append(r)
        print(json.dumps(r), file=sys.stderr)
    report = {"url": args.url, "load": results, "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="the mt model to serve (or --url)")
    p.add_argument("--url", help="instead: load this running LibreTranslate-compatible server")
    p.add_argument("--out", type=Path, default=Path("/tmp/serve_load.json"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    p.add_argument("--soak", type=int, default=10_000, help="total requests before the last memory reading")
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds per phase at most")
    p.add_argument("--sentences", type=int, default=None, help="only the first N (a quick try)")
    p.add_argument("--observability-runs", type=int, default=0,
                   help="instead: N interleaved pairs of C = 32 runs, access log and metrics off, then on")
    p.add_argument("--ratio-runs", type=int, default=0,
                   help="instead: N pairs of offline `mt translate --input`, then a fresh server at C = 32")
    args, extra = p.parse_known_args()
    from machine_translation.data.sources import parse_data_spec, read_split
    sentences, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", os.environ.get("MT_DATA_DIR"))
    sentences = sentences[: args.sentences]

    if args.url:
        return load_url(args, sentences)
    if not args.model:
        p.error("--model or --url is required")
    if args.observability_runs:
        return compare_observability(args, sentences, extra)
    if args.ratio_runs:
        return compare_offline(args, sentences, extra)
    reference = offline(args.model, sentences, args.threads)
    print(f"offline: {reference['cli_sentences_per_s']} sentences/s (mt translate --input), "
          f"{reference['translator_sentences_per_s']} (Translator)", file=sys.stderr)
    proc, url = start_server(args.model, args.threads, extra)
    results, sent, rss = [], 0, {}
    try:
        for c in args.concurrency:
            cpu = cpu_seconds(proc.pid), time.process_time()
            r = asyncio.run(load(url, sentences, c, args.time_limit))
            r["server_cpu_s"] = round(cpu_seconds(proc.pid) - cpu[0], 1)
            r["client_cpu_s"] = round(time.process_time() - cpu[1], 1)
            sent += r["requests"]
            answers = r.pop("answers")
            r["same_as_offline"] = sum(answers.get(i) == t for i, t in enumerate(reference["translations"]))
            results.append(r)
            print(json.dumps(r), file=sys.stderr)
            if "after_1000" not in rss and sent >= 1000:
                rss["after_1000"] = round(rss_mib(proc.pid), 1)
        while sent < args.soak:  # the soak: C = 32 again until request 10,000, RSS after each round
            r = asyncio.run(load(url, sentences[: min(len(sentences), args.soak - sent)], 32, args.time_limit))
            sent += r["requests"]
            if r["requests"] == 0:
                break
            rss[f"after_{sent}"] = round(rss_mib(proc.pid), 1)
    finally:
        proc.terminate()
        proc.wait(60)
    report = {"offline": {k: v for k, v in reference.items() if k != "translations"}, "load": results,
              "rss_mib": rss, "requests": sent, "model": args.model, "threads": args.threads,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
