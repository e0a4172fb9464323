"""Using a model: precision and kernels, greedy/beam search and sampling, the repetition
guard, case handling, the `Translator` and `Generator` APIs, attention alignment, and
scoring with sacreBLEU. It never imports training."""
