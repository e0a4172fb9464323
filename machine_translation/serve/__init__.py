"""`mt serve`: a translation service speaking LibreTranslate's HTTP API (so its clients work
unchanged), with dynamic batching of concurrent requests and a web page.

`texts` (the text pipeline around requests), `batcher` (the queue and the batching thread), `api` (parameters, errors, keys, rate limit),
`app` (the routes), `server` (loading models, the port, uvicorn).
Nothing here imports the CLI; `machine_translation.cli.serve` is the command.
"""
