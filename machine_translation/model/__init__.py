"""The model and its home on disk: the encoder-decoder and decoder-only models built from
one config (`transformer`), self-contained model directories (`directory`), the migration of
directories written by earlier versions (`compat`), and the rule for where mt may write a
directory (`outputs`)."""
