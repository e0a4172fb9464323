"""`/metrics` (`mt serve --metrics`): Prometheus's text format, by `prometheus_client`.

    mt_requests_total{route, method, status}     requests answered (route: the app's path, or "other")
    mt_request_duration_seconds{route}           a latency histogram
    mt_queue_depth{model}                        sentences waiting, read when scraped
    mt_batch_size{model}                         sentences per batch (a histogram)
    mt_sentences_total{model}                    sentences translated

Each app has its own registry (no process-wide state); the model figures are read from the
batchers at scrape time, so the batching thread never touches Prometheus. With
`--metrics-token`, a scrape needs `Authorization: Bearer TOKEN`.
"""
from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from starlette.requests import Request
from starlette.responses import Response

from machine_translation.serve.api import ApiError

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self, batchers: dict, routes: set[str], token: str | None = None):
        self.registry, self.routes, self.token = CollectorRegistry(), routes, token
        self.requests = Counter("mt_requests", "Requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("mt_request_duration_seconds", "Time to answer a request", ["route"],
                                 registry=self.registry)
        self.registry.register(_Batchers(batchers))

    def observe(self, scope, status: int, seconds: float) -> None:
        route = scope["path"] if scope["path"] in self.routes else "other"  # unknown paths do not make new series
        self.requests.labels(route, scope["method"], str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def answer(self, request: Request) -> Response:
        if self.token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                raise ApiError(401, "Invalid or missing metrics token: send Authorization: Bearer TOKEN",
                               {"WWW-Authenticate": "Bearer"})
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _Batchers:
    """The served models' queues and batches, read at scrape time: {model name: Batcher}."""

    def __init__(self, batchers: dict):
        self.batchers = batchers

    def collect(self):
        depth = GaugeMetricFamily("mt_queue_depth", "Sentences waiting", labels=["model"])
        done = CounterMetricFamily("mt_sentences", "Sentences translated", labels=["model"])
        sizes = HistogramMetricFamily("mt_batch_size", "Sentences per batch", labels=["model"])
        for name, batcher in self.batchers.items():
            depth.add_metric([name], batcher.depth)
            done.add_metric([name], batcher.sentences_done)
            counts = batcher.batch_counts()
            cumulative = [(str(b), sum(c for s, c in counts.items() if s <= b)) for b in BATCH_BUCKETS]
            total = sum(s * c for s, c in counts.items())
            sizes.add_metric([name], cumulative + [("+Inf", sum(counts.values()))], total)
        yield from (depth, done, sizes)
