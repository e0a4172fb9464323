"""`mt serve` against LibreTranslate, the server people run, on the same model: the model is
exported with `mt export --to argos` and installed into LibreTranslate; both answer the 1,000
sentences of test_2016_flickr as single-sentence requests from C = 1, 8 and 32 clients
(`serve_load.load`, 127.0.0.1 only, bounded in time), with the same search: beam 4 and
Argos's fixed length penalty 0.2, mt's repetition guard and case handling off (a copy of the
model directory whose generation_config.json says so), the same precision.

LibreTranslate cannot share mt's environment (it pins Flask, requests, numpy and
prometheus-client and installs its fork of argostranslate under the same module name): the
script makes a virtual environment of its own (`--venv`, made once) with the CPU torch wheel
first (its dependencies would pull a CUDA build), LibreTranslate, and spaCy (for the
package's own sentence splitter, `ARGOS_CHUNK_TYPE=SPACY`; rich is held below 13 for
flask-limiter). LibreTranslate runs with `--load-only en,fr --threads 2`, its package folder,
data and cache in a temporary directory; it finds one package installed and no network, and
says so once ("Cannot update models").

Also `mt translate --input` offline with each engine, for serving/offline ratios.

    MT_DATA_DIR=../shared/data python benchmarks/serve_libretranslate.py --model /tmp/m6 \\
        --out docs/results/serve_libretranslate.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import cpu_seconds, load, start_server  # noqa: E402

LIBRETRANSLATE = "libretranslate==1.9.6"
TORCH = os.environ.get("TORCH", "torch==2.13.0")
SEARCH = {"beam": 4, "length_penalty": 0.2, "repeat_guard": False, "normalize_case": False}


def ensure_venv(venv: Path) -> Path:
    """LibreTranslate's own environment, made once."""
    if (venv / "bin" / "libretranslate").exists():
        return venv
    print(f"making {venv} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + [TORCH], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text(f"{TORCH}\nrich<13\n")
    subprocess.run(pip + ["-c", str(constraints), LIBRETRANSLATE, "spacy", "rich<13"], check=True)
    return venv


def search_copy(model: Path, root: Path) -> Path:
    """The model directory with the benchmark's search settings in its generation_config.json."""
    copy = root / "model"
    copy.mkdir()
    for item in model.iterdir():
        if item.name != "generation_config.json":
            (copy / item.name).symlink_to(item.resolve())
    generation = json.loads((model / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps(generation | SEARCH, indent=2))
    return copy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_libretranslate(venv: Path, package: Path, home: Path, threads: int, beam: int, inter: int):
    """LibreTranslate with the package installed; `inter` CTranslate2 translators of
    threads // inter threads each (its default: 1 of all cores)."""
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_CONFIG_HOME": str(home / "config"), "ARGOS_PACKAGES_DIR": str(home / "packages"),
           "ARGOS_CHUNK_TYPE": "SPACY", "ARGOS_BEAM_SIZE": str(beam), "ARGOS_COMPUTE_TYPE": "default",
           "ARGOS_INTER_THREADS": str(inter), "ARGOS_INTRA_THREADS": str(threads // inter)}
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-c", "import sys; from argostranslate import package; package.install_from_path(sys.argv[1])",
                    str(package)], env=env, check=True, capture_output=True)
    port = free_port()
    log = open(home / "libretranslate.log", "w")
    proc = subprocess.Popen([str(venv / "bin" / "libretranslate"), "--host", "127.0.0.1", "--port", str(port),
                             "--load-only", "en,fr", "--threads", str(threads)], env=env, cwd=home, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/languages", timeout=5) as r:
                if any(lang["code"] == "fr" for lang in json.load(r)):
                    return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit(f"LibreTranslate did not start: {(home / 'libretranslate.log').read_text()[-2000:]}")


def warm(url: str) -> None:
    body = json.dumps({"q": "A dog runs.", "source": "en", "target": "fr"}).encode()
    request = urllib.request.Request(url + "/translate", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=120).read()


def sweep(name: str, proc, url: str, sentences: list[str], args) -> dict:
    warm(url)
    runs = []
    for c in args.concurrency:
        cpu = cpu_seconds(proc.pid)
        r = asyncio.run(load(url, sentences, c, args.time_limit))
        r["server_cpu_s"] = round(cpu_seconds(proc.pid) - cpu, 1)
        runs.append(r)
        print(f"{name} C={c}: {r['sentences_per_s']} sentences/s, p99 {r['p99_ms']} ms, {r['errors']} errors",
              file=sys.stderr)
    return {"runs": runs}


def offline(model: Path, sentences: list[str], threads: int, engine: str, precision: str, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.en"
        src.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "machine_translation", "translate", "--model", str(model), "--input",
                              str(src), "--threads", str(threads), "--engine", engine, "--precision", precision,
                              "--workers", str(workers)],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        wall = time.perf_counter() - t
    return {"sentences_per_s": round(len(sentences) / wall, 1), "translations": out}


def workers(engine: str, threads: int) -> int:
    """Each engine's best setting here: CTranslate2 as one translator per core (inter_threads),
    mt's own search as one process of all threads (its small steps run on one core anyway)."""
    return threads if engine == "ctranslate2" else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("/tmp/serve_libretranslate.json"))
    p.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "mt" / "libretranslate-1.9.6")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds per load phase at most")
    p.add_argument("--sentences", type=int, default=None, help="only the first N (a quick try)")
    args = p.parse_args()
    from machine_translation.data.sources import parse_data_spec, read_split
    sentences, _ = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", os.environ.get("MT_DATA_DIR"))
    sentences = sentences[: args.sentences]
    venv = ensure_venv(args.venv)
    report = {"model": str(args.model), "precision": args.precision, "threads": args.threads, "search": SEARCH,
              "libretranslate": LIBRETRANSLATE, "date": time.strftime("%Y-%m-%d %H:%M"), "servers": {}, "offline": {}}
    answers = {}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        model = search_copy(args.model, root)
        package = root / "en_fr.argosmodel"
        subprocess.run([sys.executable, "-m", "machine_translation", "export", str(model), "--to", "argos", "--out",
                        str(package), "--precision", args.precision], check=True, capture_output=True)
        servers = [(f"libretranslate inter {inter}", lambda i=inter: start_libretranslate(
            venv, package, root / f"lt{i}", args.threads, SEARCH["beam"], i)) for inter in (1, args.threads)]
        for engine in ("torch", "ctranslate2"):
            flags = ["--engine", engine, "--precision", args.precision, "--no-access-log", "--workers",
                     str(workers(engine, args.threads))]
            servers.append((f"mt serve --engine {engine}", lambda f=flags: start_server(str(model), args.threads, f)))
        for name, start in servers:
            proc, url = start()
            try:
                result = sweep(name, proc, url, sentences, args)
            finally:
                proc.terminate()
                proc.wait(60)
            answers[name] = [r.pop("answers") for r in result["runs"]]
            report["servers"][name] = result
        for engine in ("torch", "ctranslate2"):
            found = offline(model, sentences, args.threads, engine, args.precision, workers(engine, args.threads))
            answers[f"offline {engine}"] = found.pop("translations")
            report["offline"][engine] = found
    summarize(report, answers, sentences)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


def summarize(report: dict, answers: dict, sentences: list[str]) -> None:
    """Ratios at each C against LibreTranslate's faster setting, serving against offline, and
    identical answers."""
    fastest = max((n for n in report["servers"] if n.startswith("libretranslate")),
                  key=lambda n: report["servers"][n]["runs"][-1]["sentences_per_s"])
    report["libretranslate_fastest"] = fastest
    lt = report["servers"][fastest]["runs"]
    lt_answers = answers[fastest][-1]
    for engine in ("torch", "ctranslate2"):
        name = f"mt serve --engine {engine}"
        runs = report["servers"][name]["runs"]
        report["servers"][name]["over_libretranslate"] = [
            {"concurrency": a["concurrency"], "sentences_per_s": round(a["sentences_per_s"] / b["sentences_per_s"], 2),
             "p99": round(a["p99_ms"] / b["p99_ms"], 2)} for a, b in zip(runs, lt)]
        report["servers"][name]["c32_over_offline"] = round(runs[-1]["sentences_per_s"] /
                                                            report["offline"][engine]["sentences_per_s"], 2)
        mine = answers[name][-1]
        report["servers"][name]["same_as_libretranslate"] = sum(mine.get(i) == lt_answers.get(i)
                                                                for i in range(len(sentences)))
        offline_lines = answers[f"offline {engine}"]
        report["servers"][name]["same_as_offline"] = sum(mine.get(i) == t for i, t in enumerate(offline_lines))


if __name__ == "__main__":
    main()
