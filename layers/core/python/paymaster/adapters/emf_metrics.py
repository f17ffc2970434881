"""Each request's metrics as CloudWatch Embedded Metric Format, one JSON line on stdout.

Lambda's log agent sends stdout to CloudWatch Logs, which turns each EMF line into metrics: no
PutMetricData, no network on the request's path. Under Lambda Web Adapter there is no handler
for `log_metrics` to wrap, and an execution environment may be frozen once a response ends, so
each request's line is written and flushed as its outcome is known — before its answer.

Powertools' `Metrics` keeps its metrics in class attributes shared by every instance, which
would mix concurrent requests (the local gateway serves them in threads); so each thread has
its own `EphemeralMetrics`, Powertools' unshared provider, emptied after each line it builds,
and a lock keeps lines whole on the stream.

One line per request, whose directives are (docs/METRICS.md):

    team, app, model, env     every metric of the request (names.REQUEST_METRICS)
    team, env, reason         Denials, when a rule (or the store being unavailable) refused it

and, for each provider that failed in it, one more line: ProviderErrors by provider (a line has
one value per dimension, and a request that fell back may have met two failing providers).
"""

import json
import sys
import threading
from collections import Counter
from datetime import datetime
from typing import Any, TextIO

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from paymaster import names
from paymaster.domain.cardinality import MetricDimensions
from paymaster.ports import RequestMetrics

logger = Logger(service="paymaster")

COUNT = MetricUnit.Count
MILLISECONDS = MetricUnit.Milliseconds
NO_UNIT = MetricUnit.NoUnit


class EmfMetrics:
    """`stream`: where the lines go (stdout, as Lambda and Powertools expect, when None).

    At start, a policy past its stream budget is logged: a warning saying what collapsed, an
    error if even collapsed it passes the budget (team and env are kept regardless).
    """

    def __init__(self, dimensions: MetricDimensions, namespace: str, stream: TextIO | None = None) -> None:
        self._dimensions = dimensions
        self._namespace = namespace
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._per_thread = threading.local()
        if dimensions.collapsed:
            (logger.warning if dimensions.within_budget else logger.error)(
                "metric dimensions collapsed past the policy's stream budget",
                extra={
                    "streams": dimensions.streams,
                    "uncollapsed": dimensions.uncollapsed,
                    "budget": dimensions.budget,
                    "collapsed": list(dimensions.collapsed),
                },
            )

    def emit(self, request: RequestMetrics) -> None:
        try:
            text = "".join(json.dumps(doc, separators=(",", ":")) + "\n" for doc in self.documents(request))
        except Exception:  # Powertools validates the line: whatever it raises, the answered request stands
            logger.exception("metrics not written: the request's line could not be made")
            return
        try:
            with self._lock:
                self._stream.write(text)
                self._stream.flush()
        except (OSError, ValueError) as error:  # a closed or broken stdout: the request stands
            logger.warning("metrics not written", extra={"error": str(error)})

    def documents(self, request: RequestMetrics) -> list[dict[str, Any]]:
        """The request's EMF documents: its own, then one per provider that failed in it."""
        counts = _request_counts(request)
        values = self._dimensions.of_request(team=request.team, app=request.app, model=request.model, env=request.env)
        document = self._serialized(values, counts)
        if request.denied_by is not None:
            by_reason = {
                names.DIMENSION_TEAM: request.team,
                names.DIMENSION_ENV: request.env,
                names.DIMENSION_REASON: request.denied_by,
            }
            _add_directives(document, self._serialized(by_reason, [(names.METRIC_DENIALS, COUNT, 1)]))
        documents = [document]
        for provider, failures in Counter(request.provider_errors).items():
            by_provider = {names.DIMENSION_PROVIDER: provider}
            documents.append(self._serialized(by_provider, [(names.METRIC_PROVIDER_ERRORS, COUNT, failures)]))
        if request.request_id is not None:
            for each in documents:
                # A property, not a dimension: Logs Insights finds the lines by it; metrics ignore it.
                each[names.METRICS_REQUEST_ID] = request.request_id
        return documents

    def _serialized(self, dimensions: dict[str, str], metrics: list[tuple[str, MetricUnit, float]]) -> dict[str, Any]:
        """One directive by Powertools' serializer, on this thread's own EphemeralMetrics: made
        once per thread (its making costs a third of a line), emptied after each use."""
        provider: EphemeralMetrics | None = getattr(self._per_thread, "metrics", None)
        if provider is None:
            # No `service`: the namespace names the service, and a dimension would change every stream.
            provider = self._per_thread.metrics = EphemeralMetrics(namespace=self._namespace, service="")
        try:
            for name, value in dimensions.items():
                provider.add_dimension(name, value)
            for metric, unit, amount in metrics:
                provider.add_metric(metric, unit, amount)
            return dict(provider.serialize_metric_set())
        finally:
            provider.clear_metrics()


def _request_counts(request: RequestMetrics) -> list[tuple[str, MetricUnit, float]]:
    """The request's metrics under team, app, model and env: (name, unit, value)."""
    counts: list[tuple[str, MetricUnit, float]] = [(names.METRIC_REQUESTS, COUNT, 1)]
    if request.denied_by is not None:
        counts.append((names.METRIC_DENIALS, COUNT, 1))
    if (bill := request.bill) is not None:
        usage = bill.usage
        counts += [
            (names.METRIC_INPUT_TOKENS, COUNT, usage.input_tokens),
            (names.METRIC_OUTPUT_TOKENS, COUNT, usage.output_tokens),
            (names.METRIC_COST, NO_UNIT, bill.cost),  # micro-USD: CloudWatch has no currency
        ]
        # Present only when non-zero, as are the counts below: a model without a cache, a
        # request without a fallback, yields no stream for them.
        if usage.cache_read_tokens:
            counts.append((names.METRIC_CACHE_READ_TOKENS, COUNT, usage.cache_read_tokens))
        if usage.cache_write_tokens:
            counts.append((names.METRIC_CACHE_WRITE_TOKENS, COUNT, usage.cache_write_tokens))
    if request.downgraded:
        counts.append((names.METRIC_DOWNGRADES, COUNT, 1))
    if request.fell_back:
        counts.append((names.METRIC_FALLBACKS, COUNT, 1))
    if request.provider_errors:
        counts.append((names.METRIC_PROVIDER_ERRORS, COUNT, len(request.provider_errors)))
    if request.latency_ms is not None:
        counts.append((names.METRIC_LATENCY, MILLISECONDS, request.latency_ms))
    if request.first_token_ms is not None:
        counts.append((names.METRIC_TIME_TO_FIRST_TOKEN, MILLISECONDS, request.first_token_ms))
    return counts


def _add_directives(document: dict[str, Any], other: dict[str, Any]) -> None:
    """`other`'s directives and values into `document`: one line that CloudWatch reads as both.

    Where both hold a value (a dimension, a metric), it is the same request's same value."""
    document["_aws"]["CloudWatchMetrics"].extend(other["_aws"]["CloudWatchMetrics"])
    document.update({key: value for key, value in other.items() if key != "_aws"})


class EmfProjections:
    """The forecast's projections (`ports.ProjectionMetrics`) as EMF lines on `stream`: one per
    team and rule, `names.METRIC_PROJECTED_SPEND` (micro-USD, or tokens for a token budget) by
    `names.PROJECTION_DIMENSIONS`, timestamped at the run's `now` — the instant it projects from,
    so that a retried run draws the same point."""

    def __init__(self, namespace: str, stream: TextIO | None = None) -> None:
        self._namespace = namespace
        self._stream = stream if stream is not None else sys.stdout

    def emit(self, team: str, rule: str, projected: int, at: datetime) -> None:
        try:
            metrics = EphemeralMetrics(namespace=self._namespace, service="")
            metrics.add_dimension(names.DIMENSION_TEAM, team)
            metrics.add_dimension(names.DIMENSION_RULE, rule)
            metrics.add_metric(names.METRIC_PROJECTED_SPEND, NO_UNIT, projected)
            metrics.set_timestamp(at)
            line = json.dumps(metrics.serialize_metric_set(), separators=(",", ":")) + "\n"
            self._stream.write(line)
            self._stream.flush()
        except Exception:  # the forecast's warnings matter more than its line on a dashboard
            logger.exception("projection not written", extra={"team": team, "rule": rule})
