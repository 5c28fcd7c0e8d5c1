"""Prometheus metrics of one server app, in a registry of its own (not the process-global one),
so several apps (tests, a benchmark with two servers) each count only their own requests."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection before the answer"


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("edgeslim_requests", "HTTP requests answered, by route and status code",
                                ["route", "code"], registry=r)
        self.errors = Counter("edgeslim_errors", "HTTP requests answered with an error (4xx/5xx), by status code",
                              ["code"], registry=r)
        self.latency = Histogram("edgeslim_request_duration_seconds", "Time from request start to answer, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("edgeslim_requests_in_flight", "Requests being served now", registry=r)
        self.disconnects = Counter("edgeslim_client_disconnects",
                                   "Clients that went away before the request was answered", registry=r)
        self.batch_size = Histogram("edgeslim_batch_size", "Rows per ONNX Runtime run (dynamic batching)",
                                    buckets=BATCH_BUCKETS, registry=r)

    def observe(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)
        if code >= 400:
            self.errors.labels(str(code)).inc()
        if code == CLIENT_CLOSED:
            self.disconnects.inc()

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 when it was never set), e.g. value("edgeslim_batch_size_count")."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
