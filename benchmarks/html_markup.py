"""format=html against plain text on the same sentences: a page of the 1,000 sentences of
test_2016_flickr in paragraphs of 5 (`<p>`), each sentence with one inline element (`<b>`,
`<i>`, `<a href>`, `<em>`, `<span class>` around one or two of its words), against the same
sentences as plain text (paragraphs as lines), both in one request to `mt serve` (on
127.0.0.1, --char-limit and --queue-size raised to take the page), and both through the
Translator offline. Alternated, 3 rounds each, medians.

Also reports how many inline elements came back wrapping words, and whether the page's text
without its tags equals the plain translation (it must: the model reads the same sentences).

    MT_DATA_DIR=../shared/data python benchmarks/html_markup.py --model /tmp/m6 --out /tmp/html.json
"""
from __future__ import annotations

import argparse
import gzip
import html
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import start_server  # noqa: E402

TAGS = [("<b>", "</b>"), ("<i>", "</i>"), ('<a href="https://example.com/x?a=1&amp;b=2">', "</a>"),
        ("<em>", "</em>"), ('<span class="hl">', "</span>")]


def page_of(sentences: list[str]) -> tuple[str, str]:
    """(the HTML page, the same sentences as plain text: a paragraph a line)."""
    paragraphs, plain = [], []
    for start in range(0, len(sentences), 5):
        group = sentences[start : start + 5]
        tagged = []
        for k, sentence in enumerate(group):
            words = html.escape(sentence, quote=False).split()
            i = (start + k) % max(1, len(words) - 1)
            open_tag, close_tag = TAGS[(start + k) % len(TAGS)]
            span = 2 if (start + k) % 3 == 0 and i + 1 < len(words) else 1
            words[i] = open_tag + words[i]
            words[i + span - 1] += close_tag
            tagged.append(" ".join(words))
        paragraphs.append("<p>" + " ".join(tagged) + "</p>")
        plain.append(" ".join(group))
    return "<html><body>\n" + "\n".join(paragraphs) + "\n</body></html>", "\n".join(plain)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import httpx

    from machine_translation.base.options import TextOptions
    from machine_translation.base.runtime import prepare
    from machine_translation.inference.translate import Translator

    data = Path(os.environ.get("MT_DATA_DIR", "../shared/data")) / "multi30k" / "test_2016_flickr.en.gz"
    sentences = [line.strip() for line in gzip.open(data, "rt", encoding="utf-8")]
    page, plain = page_of(sentences)
    result = {"sentences": len(sentences), "model": args.model, "threads": args.threads}

    proc, url = start_server(args.model, args.threads, ["--char-limit", "1000000", "--queue-size", "4096",
                                                        "--request-timeout", "600", "--max-body-bytes", "10000000"])
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            def ask(q, fmt):
                r = client.post("/translate", json={"q": q, "source": "en", "target": "fr", "format": fmt})
                r.raise_for_status()
                return r.json()["translatedText"]

            ask("A warm-up sentence.", "text")
            server = {"html": [], "text": []}
            for _ in range(args.rounds):
                for fmt, q in (("html", page), ("text", plain)):
                    seconds, out = timed(lambda: ask(q, fmt))
                    server[fmt].append(seconds)
                    result[f"server_{fmt}_output"] = out
    finally:
        proc.terminate()
        proc.wait(30)

    prepare(None, args.threads)
    translator = Translator.from_pretrained(args.model)
    translator.translate(["A warm-up sentence."])
    offline = {"html": [], "text": []}
    for _ in range(args.rounds):
        for fmt, q in (("html", page), ("text", plain)):
            seconds, _ = timed(lambda: translator.translate([q], text=TextOptions(format=fmt)))
            offline[fmt].append(seconds)

    for where, times in (("server", server), ("offline", offline)):
        for fmt in ("html", "text"):
            result[f"{where}_{fmt}_seconds"] = times[fmt]
            result[f"{where}_{fmt}_sentences_per_s"] = round(len(sentences) / statistics.median(times[fmt]), 1)
        result[f"{where}_html_vs_text"] = round(result[f"{where}_html_sentences_per_s"]
                                                / result[f"{where}_text_sentences_per_s"], 3)
    out_html, out_text = result.pop("server_html_output"), result.pop("server_text_output")
    paragraphs = re.findall(r"<p>(.*?)</p>", out_html, flags=re.S)
    stripped = [html.unescape(re.sub(r"<[^>]+>", "", p)) for p in paragraphs]
    result["stripped_html_equals_plain"] = stripped == out_text.split("\n")
    wrapped = re.findall(r"<(b|i|a|em|span)\b[^>]*>([^<]*)</\1>", out_html)
    result["inline_elements_in"] = len(sentences)
    result["inline_elements_out"] = sum(1 for _ in re.finditer(r"<(b|i|a|em|span)\b", out_html))
    result["inline_elements_wrapping_words"] = sum(1 for _, inner in wrapped if inner.strip())
    result["example"] = paragraphs[0][:600]
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if "seconds" not in k}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
