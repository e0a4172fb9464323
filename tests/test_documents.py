"""Documents as people keep them (`text.documents`, `mt translate --input FILE --output FILE`):
subtitles keep their cue count, numbering and timings; a Word file keeps its paragraphs,
runs and their formatting; HTML keeps its tags; plain-text paragraphs come back wrapped;
and what mt does not read is one clear line that loses nothing."""
import pytest
from typer.testing import CliRunner

from machine_translation.cli import app
from machine_translation.text import documents
from tests.conftest import SENTENCES

runner = CliRunner()


def mt(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def translator(learned):
    from machine_translation.inference.translate import Translator
    return Translator.from_pretrained(learned[0], "cpu")


def one_line(text: str) -> str:
    return " ".join(text.split())


SRT = f"""1
00:00:01,000 --> 00:00:04,000
{SENTENCES[0]}

7
00:00:05,000 --> 00:00:07,500
<i>{SENTENCES[1]}</i>

8
01:02:08,250 --> 01:02:09,000
{' '.join(SENTENCES[2].split()[:3])}
{' '.join(SENTENCES[2].split()[3:])}
"""


def test_subrip_keeps_its_cues_numbers_and_timings_and_translates_each_cue_whole(tmp_path, learned, translator):
    import srt
    source = tmp_path / "talk.srt"
    source.write_text(SRT, encoding="utf-8")
    r = mt("translate", "--model", learned[0], "--input", source, "--output", tmp_path / "talk.fr.srt")
    assert r.exit_code == 0, r.output
    before, after = list(srt.parse(SRT)), list(srt.parse((tmp_path / "talk.fr.srt").read_text(encoding="utf-8")))
    assert [(c.index, c.start, c.end) for c in after] == [(c.index, c.start, c.end) for c in before]
    expected = translator.translate([SENTENCES[0], SENTENCES[1], SENTENCES[2]])
    assert one_line(after[0].content) == expected[0]
    assert after[1].content == f"<i>{expected[1]}</i>"  # the cue's tag kept around its translation
    assert one_line(after[2].content) == expected[2]  # a sentence over two lines translated as one
    assert all(len(line) <= documents.SUBTITLE_WIDTH or " " not in line  # wrapped again (a cue without tags)
               for c in after if "<" not in c.content for line in c.content.split("\n"))
    assert translator.translate_document("talk.srt", SRT.encode()) == (tmp_path / "talk.fr.srt").read_bytes()  # the API


def test_webvtt_keeps_its_header_notes_styles_identifiers_and_settings(tmp_path, learned, translator):
    import webvtt
    vtt = (f"WEBVTT - a talk\n\nSTYLE\n::cue {{ color: yellow }}\n\nNOTE written by hand\n\n"
           f"intro\n00:00:01.000 --> 00:00:04.000 position:10% align:start\n{SENTENCES[3]}\n\n"
           f"00:00:05.000 --> 00:00:07.500\n<v Bob>{SENTENCES[4]}\n")
    (tmp_path / "a.vtt").write_text(vtt, encoding="utf-8")
    r = mt("translate", "--model", learned[0], "--input", tmp_path / "a.vtt", "--output", tmp_path / "b.vtt")
    assert r.exit_code == 0, r.output
    out = (tmp_path / "b.vtt").read_text(encoding="utf-8")
    for kept in ("WEBVTT - a talk", "STYLE\n::cue { color: yellow }", "NOTE written by hand",
                 "intro\n00:00:01.000 --> 00:00:04.000 position:10% align:start", "00:00:05.000 --> 00:00:07.500"):
        assert kept in out
    cues = webvtt.from_string(out).captions
    expected = translator.translate([SENTENCES[3], SENTENCES[4]])
    assert len(cues) == 2 and one_line(cues[0].raw_text) == expected[0]
    assert cues[1].raw_text == f"<v Bob>{expected[1]}"


def test_word_keeps_paragraphs_runs_formatting_tables_and_headers(tmp_path, learned, translator):
    import docx
    doc = docx.Document()
    words = SENTENCES[5].rstrip(".").split()
    p = doc.add_paragraph(" ".join(words[:2]) + " ")
    p.add_run(words[2]).bold = True
    p.add_run(" " + " ".join(words[3:]) + ".")
    doc.add_paragraph(SENTENCES[6], style="Heading 1")
    doc.add_paragraph("")  # an empty paragraph stays empty
    table = doc.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = SENTENCES[7], SENTENCES[8]
    doc.sections[0].header.paragraphs[0].text = SENTENCES[9]
    doc.save(tmp_path / "in.docx")
    r = mt("translate", "--model", learned[0], "--input", tmp_path / "in.docx", "--output", tmp_path / "out.docx")
    assert r.exit_code == 0, r.output
    before, after = docx.Document(tmp_path / "in.docx"), docx.Document(tmp_path / "out.docx")
    assert [len(p.runs) for p in after.paragraphs] == [len(p.runs) for p in before.paragraphs]
    assert [p.style.name for p in after.paragraphs] == [p.style.name for p in before.paragraphs]
    assert [r.bold for r in after.paragraphs[0].runs] == [None, True, None]
    plain = translator.translate([SENTENCES[5], SENTENCES[6], SENTENCES[7], SENTENCES[8], SENTENCES[9]])
    assert one_line(after.paragraphs[0].text) == plain[0]  # the paragraph translated whole, across its runs
    assert after.paragraphs[0].runs[1].text.strip()  # the bold run kept words of its own
    assert after.paragraphs[1].text == plain[1] and after.paragraphs[2].text == ""
    assert [c.text for c in after.tables[0].rows[0].cells] == plain[2:4]
    assert after.sections[0].header.paragraphs[0].text == plain[4]


def test_runs_stay_in_order_and_a_run_keeps_the_words_the_alignment_gave_it():
    """`_runs_of`: pieces in translation order with the run the alignment chose; a run that
    got a piece keeps one even when the translation put it before an earlier run's words."""
    # "A man in a " (run 0) "red" (run 1, bold) " shirt is riding a bicycle." (run 2), translated
    # "Un homme en" (run 0) "T-shirt" (run 2) "rouge" (run 1) "fait du vélo." (run 2)
    pieces = [(0, "Un homme en"), (0, " "), (2, "T-shirt "), (1, "rouge"), (2, " fait du vélo.")]
    runs = documents._runs_of(pieces, 3)
    assert runs == sorted(runs) and runs[3] == 1 and runs[4] == 2  # in order; "rouge" stays in the bold run
    assert documents._runs_of([(1, "a"), (0, "b")], 2) in ([0, 0], [1, 1], [0, 1])
    assert documents._run_texts('<span data-run="0">A <span data-run="1">b</span> c</span>', 2) == ["A ", "b c"]


def test_plain_text_paragraphs_are_translated_whole_and_wrapped_again(tmp_path, learned, translator):
    first = SENTENCES[10].split()
    text = " ".join(first[:4]) + "\n" + " ".join(first[4:]) + "\n\n\n" + SENTENCES[11] + "\n"
    (tmp_path / "notes.txt").write_text(text, encoding="utf-8")
    r = mt("translate", "--model", learned[0], "--paragraphs", "--input", tmp_path / "notes.txt")
    assert r.exit_code == 0, r.output
    paragraphs = r.stdout.split("\n\n\n")  # the blank lines between paragraphs kept
    assert [one_line(p) for p in paragraphs] == translator.translate([SENTENCES[10], SENTENCES[11]])
    r = mt("translate", "--model", learned[0], "--input", tmp_path / "notes.txt")  # without: line by line, as always
    assert r.stdout.count("\n") == text.count("\n")


def test_html_through_the_cli_keeps_the_page(tmp_path, learned, translator):
    page = f'<html><body><p class="a">{SENTENCES[12]}</p><!-- x --><script>a<b</script></body></html>\n'
    (tmp_path / "p.html").write_text(page, encoding="utf-8")
    r = mt("translate", "--model", learned[0], "--input", tmp_path / "p.html")
    assert r.exit_code == 0, r.output
    assert r.stdout == f'<html><body><p class="a">{translator.translate([SENTENCES[12]])[0]}</p><!-- x -->' \
                       '<script>a<b</script></body></html>\n'
    r = mt("translate", "--model", learned[0], "--format", "html", input=page)  # stdin read whole as a page
    assert r.exit_code == 0 and r.stdout.startswith('<html><body><p class="a">')
    r = mt("translate", "--model", learned[0], "--format", "html", f"<b>{SENTENCES[13]}</b>")  # each argument a page
    assert r.stdout == f"<b>{translator.translate([SENTENCES[13]])[0]}</b>\n"


@pytest.mark.parametrize("name, content, message", [
    ("a.pdf", b"%PDF-1.4", ".pdf documents are not read by mt: use one of .txt, .srt, .vtt, .html, .htm, .docx"),
    ("a.srt", b"1\nnot a time\nhello\n", "not a valid SubRip file"),
    ("a.srt", b"1\n00:00:01,000 --> 00:00:02,000\n\xff\xfe\n", "not UTF-8 text (byte"),
    ("a.docx", b"PK not a zip", "not a Word .docx file"),
    ("a.vtt", b"no header\n", "not a valid WebVTT file"),
])
def test_a_document_mt_cannot_read_is_one_clear_line(tmp_path, model_dir, name, content, message):
    (tmp_path / name).write_bytes(content)
    r = mt("translate", "--model", model_dir, "--input", tmp_path / name, "--output", tmp_path / ("out-" + name))
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / ("out-" + name)).exists()


def test_the_output_is_never_the_input_and_a_docx_needs_an_output_file(tmp_path, model_dir):
    page = tmp_path / "p.html"
    page.write_text("<p>A dog.</p>", encoding="utf-8")
    r = mt("translate", "--model", model_dir, "--input", page, "--output", tmp_path / "." / "p.html")
    assert r.exit_code == 2 and "is the --input file" in r.output
    assert page.read_text(encoding="utf-8") == "<p>A dog.</p>"  # nothing lost
    import docx
    docx.Document().save(tmp_path / "d.docx")
    r = mt("translate", "--model", model_dir, "--input", tmp_path / "d.docx")
    assert r.exit_code == 2 and "give --output FILE" in r.output
    r = mt("translate", "--model", model_dir, "--input", page, "--n-best", 2)
    assert r.exit_code == 2 and "--n-best and --attention translate lines, not documents" in r.output


def test_documents_load_from_bytes_for_the_server():
    document = documents.load("x.srt", "1\n00:00:01,000 --> 00:00:02,000\nA & B\n".encode())
    assert document.texts == ["A &amp; B"] and document.format == "html"  # a cue's & is text, not an entity
    assert b"\nA & B" in document.build(["A &amp; B"])
    assert documents.load("x.txt", b"").texts == [] and documents.load("x.txt", b"a\nb\n").build(["c", "d"]) == b"c\nd\n"
    with pytest.raises(Exception, match="use one of"):
        documents.load("x.odt", b"")
