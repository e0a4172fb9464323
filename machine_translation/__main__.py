"""`python -m machine_translation` runs the CLI (also what torchrun launches)."""
from machine_translation.cli import main

main()
