"""The English names of the languages mt knows by code, for the server's `/languages` and the
metadata of exported packages (an unknown code is its own name)."""

NAMES = {"ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish", "fr": "French",
         "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
         "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese"}


def language_name(code: str) -> str:
    return NAMES.get(code, code)
