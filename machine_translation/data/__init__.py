"""Text in: where corpora come from (`corpora`), what a --data flag names and reading a split
(`sources`), length-bucketed batches and collation for teacher forcing (`batches`), and the
memory-mapped token store of a training corpus (`store`)."""
