"""Text as people write it, before and after the model: sentences split and joined again
around the original whitespace (`sentences`), spans that must pass through untouched
(`spans`), and the language a text is in (`detect`). Plain string work: it imports nothing
of the model, so inference and serve both use it."""
