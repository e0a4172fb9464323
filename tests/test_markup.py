"""HTML as people write it (`text.markup`, `text.marks`, through `inference.pipeline`): each
block's text translated as whole sentences, inline tags back around the words they wrapped,
everything that is not text copied byte for byte.

Most tests use a stand-in model whose translation and alignment are known (the words
reversed, or kept), so where each tag must go is known exactly; one holds the real path
(`Translator.translate`) to the plain translation of the same text.
"""
import html
import re
from collections import Counter

import pytest

from machine_translation.base.errors import ConfigError
from machine_translation.base.options import TextOptions
from machine_translation.inference import pipeline
from machine_translation.inference.translate import Translation
from machine_translation.text.markup import _constructs

HTML = TextOptions(format="html")


def translate(page: str, model: str = "reverse", mapping: dict | None = None) -> str:
    """`page` through the pipeline with a stand-in model: "reverse" gives the words in reverse
    order (source word w -> target word n-1-w), "same" gives them as they are (w -> w), and
    `mapping` keeps the words and sends source word w to target word mapping[w]."""
    prepared = pipeline.prepare([page], HTML, "en", lambda s: True)
    out = []
    for sentence in prepared.sentences:
        words = sentence.split(" ")
        out.append(Translation(" ".join(reversed(words)) if model == "reverse" else sentence, 0.0, [], sentence))

    def align(translation):
        n = len(translation.text.split(" "))
        return lambda w: mapping[w] if mapping else (n - 1 - w if model == "reverse" else w)

    return pipeline.finish(prepared, out, align)[0]


def markup_of(page: str) -> list[str]:
    """The page's constructs that are not text, as written."""
    return [raw for kind, _, raw in _constructs(page) if kind != "text"]


def text_of(page: str) -> str:
    """The page's text (entities decoded), without whitespace (a no-break space included: the
    model's tokenizer reads it as a space)."""
    return "".join("".join(html.unescape(raw) for kind, _, raw in _constructs(page) if kind == "text").split())


def well_nested(page: str) -> bool:
    stack = []
    for kind, tag, _ in _constructs(page):
        if kind == "start" and tag in ("b", "i", "a", "em", "span"):
            stack.append(tag)
        elif kind == "end" and tag in ("b", "i", "a", "em", "span"):
            if not stack or stack.pop() != tag:
                return False
    return not stack


@pytest.mark.parametrize("page, expected", [
    ('<p>A man in a <b>red</b> shirt.</p>', '<p>shirt. <b>red</b> a in man A</p>'),
    ('<p>See <a href="/x?a=1&amp;b=2">the <b>big</b> site</a> now</p>',
     '<p>now <a href="/x?a=1&amp;b=2">site <b>big</b> the</a> See</p>'),
    ('<li><em>Two</em> dogs run fast.</li>', '<li>fast. run dogs <em>Two</em></li>'),
    ('<p>Fun<b>ny</b> cats.</p>', '<p>cats. <b>Funny</b></p>'),  # a tag inside a word: the word stays one, wrapped
    ('<p><b>All of it.</b></p>', '<p><b>it. of All</b></p>'),  # an element of the whole sentence wraps it whole
    ('<p>One <b>two three.</b></p>', '<p><b>three. two</b> One</p>'),  # a close after the stop stays with it
])
def test_inline_tags_go_around_the_words_they_were_translated_into(page, expected):
    assert translate(page) == expected


def test_crossing_alignments_still_give_well_nested_tags():
    """<b>w x</b> <i>y z</i>, translated w x y z -> targets 0 2 1 3: the elements' target
    words cross (0-2 and 1-3); the output closes and reopens <i> instead of crossing tags."""
    out = translate("<p><b>w x</b> <i>y z</i></p>", "same", {0: 0, 1: 2, 2: 1, 3: 3})
    assert well_nested(out), out
    assert text_of(out) == "wxyz"


def test_a_tag_across_a_sentence_boundary_opens_in_one_and_closes_in_the_next():
    # "One two three." -> "three. two One" (the element's words, two three, are its first two)
    assert translate("<p>One <b>two three. Four</b> five.</p>") == "<p><b>three. two One five. Four</b></p>"


def test_everything_that_is_not_text_is_copied_byte_for_byte():
    page = ('<!DOCTYPE html>\n<html lang="en"><head><title>A title</title>'
            '<style>p > b { color: red }</style></head>\n<body>\n'
            '<p class="x" data-v=\'1 &amp; 2\'>Tom &amp; Jerry <i>run</i>. See <a href="https://x.org?a=1&amp;b=2">'
            'the <b>big</b> site</a>!</p><!-- a comment -->\n'
            '<p>3 < 4 and <code>ls -l &lt;dir&gt;</code> lists files.<br>Next line<img src="a.png" alt="x"></p>'
            '<![CDATA[ raw < text ]]><?php echo 1; ?>'
            '<script>if (a<b) x = "<i>";</script><pre>  pre   text  </pre>'
            '<p>Unclosed <b>bold<p>second</body></html><p unclosed')
    out = translate(page, "same")
    assert markup_of(out) == markup_of(page)  # every tag, attribute, comment, CDATA, PI, script and pre as written
    assert text_of(out) == text_of(page)  # and every piece of text comes out
    assert "3 &lt; 4" in out and "<code>ls -l &lt;dir&gt;</code>" in out  # a stray < is text; <code> untouched
    assert out.endswith("<p unclosed")  # a tag the page ends inside is kept, not translated
    assert "<pre>  pre   text  </pre>" in translate(page)  # <pre> kept as it is, spaces and all
    assert "<title>A title</title>" in out  # (translated by the reversing model below)
    assert "<title>title A</title>" in translate(page)


def test_what_its_author_marked_not_to_translate_stays_as_written():
    page = ('<p>Call <span translate="no">Acme Widget</span> now. <b class="x notranslate">Big Dog</b> runs.</p>'
            '<div translate="no"><p>Keep this.</p></div><p>A <img translate="no" src=a.png> cat.</p>')
    out = translate(page)
    for kept in ('<span translate="no">Acme Widget</span>', '<b class="x notranslate">Big Dog</b>',
                 '<div translate="no"><p>Keep this.</p></div>'):
        assert kept in out, out
    assert out.endswith('<p>cat. A <img translate="no" src=a.png></p>'), out  # a void element ends at once


def test_random_markup_keeps_its_markup_and_every_text():
    """Property (Hypothesis, bounded and derandomized): for any mix of text, entities, inline
    and block tags (nested, unclosed or stray), comments, CDATA, processing instructions,
    scripts, <code> and stray '<', the translation by the stand-in model keeps every piece
    of markup byte for byte (well-nested input: in order) and every text node's text."""
    from hypothesis import given, settings, strategies as st

    fragments = st.sampled_from([
        "A", "dog", "runs.", "Big", "red", " ", "  ", "\n", "&amp;", "&lt;", "&nbsp;", "caf&eacute;", "3 < 4", "x<",
        "<b>", "</b>", "<i>", "</i>", '<a href="/p?q=1&amp;r=2">', "</a>", "<span class=s>", "</span>",
        "<p>", "</p>", "<div>", "</div>", "<br>", "<br/>", '<img src="i.png">', "<li>", "<!-- note -->",
        "<![CDATA[ x < y ]]>", "<?pi data?>", "<script>if (a<b) c();</script>", "<code>f(x)</code>",
        "<style>b{}</style>", "<!DOCTYPE html>", "</>", "<wbr>",
    ])

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(st.lists(fragments, max_size=25))
    def check(parts):
        page = "".join(parts)
        for model in ("same", "reverse"):
            out = translate(page, model)
            assert Counter(markup_of(out)) == Counter(markup_of(page)), (page, out)
            assert sorted(text_of(out)) == sorted(text_of(page)), (page, out)
            if model == "same" and well_nested(page):
                assert markup_of(out) == markup_of(page), (page, out)
                assert text_of(out) == text_of(page), (page, out)

    check()


def test_the_real_path_gives_the_plain_translation_with_the_tags_around_it(learned):
    """Translator.translate(format=html) on a trained model: the text without its tags is
    exactly the translation of the text alone, and each tag pair wraps a non-empty part."""
    from machine_translation.inference.translate import Translator
    translator = Translator.from_pretrained(learned[0], "cpu")
    pages = ['<p>A man in a <b>red</b> shirt is riding a bike.</p>',
             '<div>Two <i>young</i> girls are <a href="/x">playing in the <em>park</em></a>.</div>',
             '<p>A dog runs. A <b>black</b> cat sleeps on a chair.</p>']
    plain = [re.sub(r"<[^>]+>", "", p) for p in pages]
    out = translator.translate(pages, text=HTML)
    expected = translator.translate(plain)
    for page, got, want in zip(pages, out, expected):
        inner = re.sub(r"^<(p|div)>|</(p|div)>$", "", got)
        assert html.unescape(re.sub(r"<[^>]+>", "", inner)) == want, (page, got)
        assert well_nested(got) and markup_of(got) == markup_of(page), (page, got)
        assert not re.search(r"<(b|i|a|em)[^>]*>\s*</", got), got  # no tag pair left empty


def test_alignments_in_a_batch_equal_alignments_one_at_a_time(learned):
    """The padded batch (`Translator.alignments`) attends as each pair alone does."""
    from machine_translation.inference.translate import Translator
    translator = Translator.from_pretrained(learned[0], "cpu")
    sentences = ["A dog runs.", "Two young girls are playing in the park near a big tree.", "A man sleeps."]
    best = [n[0] for n in translator.translations(sentences)]
    batch = translator.alignments(best)
    for translation, together in zip(best, batch):
        alone = translator.alignment(translation)
        assert together.source_pieces == alone.source_pieces and together.target_pieces == alone.target_pieces
        assert max(abs(a - b) for r1, r2 in zip(together.weights, alone.weights) for a, b in zip(r1, r2)) < 1e-3
        words = len(translation.source.split())
        assert [together.target_word_of(w) for w in range(words)] == [alone.target_word_of(w) for w in range(words)]


def test_an_unknown_format_is_one_clear_error():
    with pytest.raises(ConfigError, match="--format xml: use one of text, html"):
        TextOptions(format="xml")
