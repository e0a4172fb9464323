"""Input cased unlike the corpus: ALL-CAPS and Title-Case sentences are translated in sentence
case and ALL-CAPS ones come back in capitals; every other sentence is left exactly as it is."""
import pytest

from machine_translation.inference import casing
@pytest.mark.parametrize("sentence, kind, normalized", [
    ("A COUPLE OF WOOD SIGNS POINTED IN DIFFERENT DIRECTIONS", casing.UPPER,
     "A couple of wood signs pointed in different directions"),
    ("  TWO DOGS PLAY!", casing.UPPER, "  Two dogs play!"),
    ("A Man Is Riding A Bike", casing.TITLE, "A man is riding a bike"),
    ("A man is riding a bike.", casing.AS_IS, "A man is riding a bike."),
    ("a man rides in New York City", casing.AS_IS, "a man rides in New York City"),
    ("The USA and the UK", casing.AS_IS, "The USA and the UK"),
    ("OK", casing.AS_IS, "OK"),  # too short to say
    ("", casing.AS_IS, ""),
    ("ÉCOLE DE LA RUE", casing.UPPER, "École de la rue"),
])
def test_normalize(sentence, kind, normalized):
    assert casing.normalize(sentence) == (normalized, kind)


def test_restore_gives_capitals_back_only_to_capitals():
    assert casing.restore("Un chien court.", casing.UPPER) == "UN CHIEN COURT."
    assert casing.restore("Un chien court.", casing.TITLE) == "Un chien court."
    assert casing.restore("Un chien court.", casing.AS_IS) == "Un chien court."


def test_the_translator_translates_capitals_like_clean_input(learned):
    from machine_translation.base.options import SearchOptions
    from machine_translation.inference.translate import Translator
    out, _ = learned
    tr = Translator.from_pretrained(out, "cpu")
    clean = ["Two dogs play in the snow.", "A man is riding a bike."]
    options = SearchOptions(beam=2, normalize_case=True, repeat_guard=True)
    assert tr.translate([s.upper() for s in clean], options) == [t.upper() for t in tr.translate(clean, options)]
    assert tr.translate([s.title() for s in clean], options) == tr.translate(clean, options)
    n_best = tr.translations([clean[0].upper()], options.updated(beam=3, n_best=3))[0]
    assert len(n_best) == 3 and all(t.text == t.text.upper() for t in n_best)
