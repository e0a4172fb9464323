"""Models in and out of mt: `marian` imports OPUS-MT / Marian models from Hugging Face's
format (a local directory or `hf:ORG/NAME`) as ordinary mt model directories."""
