"""`mt`: an encoder-decoder Transformer toolkit for machine translation, and the same
decoder blocks as a GPT-style language model.

The application package: it joins `encoder_transformer`, `decoder` and `mt_tokenizers`
into models, data, training, search, evaluation and the CLI. Nothing imports it.
"""
__version__ = "0.1.0"

from machine_translation.generate import Generator  # noqa: E402
from machine_translation.translate import Translator  # noqa: E402

__all__ = ["Generator", "Translator", "__version__"]
