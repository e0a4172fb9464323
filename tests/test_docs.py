"""Citations of the benchmark pages name sections that exist: a comment or doc that says
"docs/benchmarks.md, Translation speed" must find that heading there (numbered subsections
like "section 1c" moved to the log and are not stable names)."""
import re
import subprocess

from tests.conftest import REPO

PAGES = ("docs/benchmarks.md", "docs/benchmarks-log.md")
CITATION = re.compile(r"(docs/benchmarks(?:-log)?\.md)(,? ?(?:section )?)([^\n]{0,120})")


def headings(page: str) -> list[str]:
    text = (REPO / page).read_text(encoding="utf-8")
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#") and " " in line]


def citations() -> list[tuple[str, int, str, str, str]]:
    """(file, line, page, separator, the text after it) of every mention of a benchmark page."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    found = []
    for name in files:
        if name in (*PAGES, "tests/test_docs.py") or not name.endswith((".py", ".md", ".sh", "Makefile", ".toml",
                                                                          ".html")):
            continue
        path = REPO / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        # a citation may wrap: join each line to the next, without its indent and comment marker
        joined = re.sub(r"\n[ \t]*(?:#+ ?|>+ ?)?[ \t]*", " ", text)
        for m in CITATION.finditer(joined):
            number = text[: max(text.find(m.group(0)[:40]), 0)].count("\n") + 1  # (where it starts, near enough)
            found.append((name, number, m.group(1), m.group(2), m.group(3)))
    return found


def cited_heading_exists(page: str, separator: str, rest: str, known: list[str]) -> bool:
    if separator.strip() == "":  # a bare mention of the page (a link, "see docs/benchmarks.md")
        return not re.match(r"\d", rest)
    if "section" in separator:
        return False
    cited = re.split(r"[);`]", rest)[0].strip().rstrip(".,")
    bases = {h for h in known} | {h.split(" (")[0] for h in known}  # a heading without its "(issue 11)"
    return bool(cited) and any(h.startswith(cited) or cited.startswith(h) for h in bases)


def test_every_cited_benchmark_section_exists():
    known = {page: headings(page) for page in PAGES}
    bad = [f"{name}:{number}: {page}{sep}{rest[:60]}" for name, number, page, sep, rest in citations()
           if not cited_heading_exists(page, sep, rest, known[page])]
    assert not bad, "citations of sections that do not exist (cite 'docs/benchmarks.md, <heading>'):\n" + "\n".join(bad)


def test_the_checker_refuses_a_missing_or_numbered_section():
    known = headings("docs/benchmarks.md")
    assert cited_heading_exists("docs/benchmarks.md", ", ", "Translation speed).", known)
    assert not cited_heading_exists("docs/benchmarks.md", ", ", "Speed of translating", known)
    assert not cited_heading_exists("docs/benchmarks.md", " section ", "1c).", known)
    assert not cited_heading_exists("docs/benchmarks.md", " ", "1f).", known)
