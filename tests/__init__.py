# A regular package, so that `tests` is this folder even when an installed distribution ships a
# top-level `tests` package of its own (argostranslate 1.11 does): a namespace package loses to it.
