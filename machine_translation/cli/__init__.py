"""The `mt` command line (typer): `app.py` holds the app and its error handling, and each
command is defined, and registered on the app, in its own module. Only this package
prints results and chooses exit codes; nothing else in `machine_translation` imports it.
"""
# Each import registers its command; `mt --help` lists them in this order.
from machine_translation.cli import train  # noqa: F401, I001
from machine_translation.cli import translate  # noqa: F401
from machine_translation.cli import evaluate  # noqa: F401
from machine_translation.cli import detect  # noqa: F401
from machine_translation.cli import generate  # noqa: F401
from machine_translation.cli import average  # noqa: F401
from machine_translation.cli import quantize  # noqa: F401
from machine_translation.cli import serve  # noqa: F401
from machine_translation.cli import importer  # noqa: F401
from machine_translation.cli import export  # noqa: F401
from machine_translation.cli import plot  # noqa: F401
from machine_translation.cli.app import app, main

__all__ = ["app", "main"]
