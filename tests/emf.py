"""Reading the gateway's EMF lines back, and checking them against CloudWatch's specification.

The rules are those of "Specification: Embedded metric format" (CloudWatch User Guide): a root
`_aws` with an integer `Timestamp` and a `CloudWatchMetrics` array of directives, each with a
`Namespace`, `Dimensions` (arrays of at most 30 names, each a string member of the root) and
`Metrics` (at most 100, each a `Name` whose value at the root is a number or array of numbers,
and an optional `Unit` of CloudWatch's); a metric name of 1–255 characters.
"""

import json
from dataclasses import dataclass
from typing import Any

# CloudWatch's standard units (MetricDatum.Unit).
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def assert_valid_emf(document: dict[str, Any]) -> None:
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert meta["Timestamp"] > 0
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list)
    assert directives
    for directive in directives:
        assert set(directive) <= {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str)
        assert 1 <= len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list)
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(document[name], str), name
                assert document[name], name
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert 1 <= len(metric["Name"]) <= 255
            assert metric.get("Unit", "None") in UNITS
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert values, metric["Name"]
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values), metric["Name"]


@dataclass(frozen=True)
class Series:
    """One metric of one directive: its unit, dimensions (name → value) and values."""

    unit: str
    dimensions: dict[str, str]
    values: list[float]


def documents(text: str) -> list[dict[str, Any]]:
    """The EMF documents among the lines of `text` (log lines have no `_aws`), each validated."""
    found = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if "_aws" in document:
            assert_valid_emf(document)
            found.append(document)
    return found


def series(document: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], Series]:
    """Every (metric name, dimension names) the document yields, as CloudWatch reads it."""
    found = {}
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                found[(metric["Name"], tuple(dimension_set))] = Series(
                    metric.get("Unit", "None"),
                    {name: document[name] for name in dimension_set},
                    value if isinstance(value, list) else [value],
                )
    return found
