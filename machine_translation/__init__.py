"""`mt`: an encoder-decoder Transformer toolkit for machine translation, and the same
decoder blocks as a GPT-style language model.

The application package: it joins `encoder_transformer`, `decoder` and `mt_tokenizers`
into models, data, training, search, evaluation and the CLI. Nothing imports it.
"""
__version__ = "0.1.0"

__all__ = ["Generator", "Translator", "__version__"]


def __getattr__(name: str):
    """`from machine_translation import Translator` works, but importing the package (e.g. for
    the CLI's --help) does not import torch until a model class is asked for."""
    if name == "Translator":
        from machine_translation.inference.translate import Translator
        return Translator
    if name == "Generator":
        from machine_translation.inference.generate import Generator
        return Generator
    raise AttributeError(f"module 'machine_translation' has no attribute {name!r}")
