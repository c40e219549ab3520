"""Metric data points → events (one per point), named by the metric.

The point's attributes become properties, as a span's do; what the point itself says goes
under `metric.*`, so an attribute named `type` or `value` (coding agents use both) never
meets it: `metric.type` (gauge, sum, histogram, exponential_histogram, summary),
`metric.unit`, `metric.temporality` (delta or cumulative), `metric.monotonic`,
`metric.start_time`, and the value(s): `metric.value`; for histograms `metric.count`,
`metric.sum`, `metric.min`, `metric.max`, `metric.bucket_counts`, `metric.explicit_bounds`;
for exponential ones `metric.scale`, `metric.zero_count`, `metric.zero_threshold`,
`metric.positive.offset`/`.bucket_counts` and the same for `negative`; for summaries
`metric.quantiles` as [{quantile, value}]. Exemplars are not kept.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)

from agent_telemetryd.otlp.decoded import (
    Decoded,
    Refused,
    ResourceInfo,
    scope_properties,
    wire_event,
)
from agent_telemetryd.otlp.identity import identity_uuid
from agent_telemetryd.otlp.values import attributes, rfc3339, time_ms

Point = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint | SummaryDataPoint

TEMPORALITIES = {
    AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA: "delta",
    AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE: "cumulative",
}
NO_RECORDED_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

NO_NAME = "metric has no name"
NO_DATA = (
    "metric has no data this daemon reads (gauge, sum, histogram, exponential histogram, summary)"
)
NO_TIME = "data point has no time_unix_nano"


def map_metrics(request: ExportMetricsServiceRequest, out: Decoded) -> None:
    for resource_metrics in request.resource_metrics:
        resource = out.add_resource(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_properties(scope_metrics.scope)
            scope_identity = scope_metrics.scope.SerializeToString(deterministic=True)
            for metric in scope_metrics.metrics:
                _map_metric(metric, resource, scope, scope_identity, out)


def _map_metric(
    metric: Metric,
    resource: ResourceInfo,
    scope: dict[str, Any],
    scope_identity: bytes,
    out: Decoded,
) -> None:
    kind = metric.WhichOneof("data")
    if kind is None:
        out.refused.append(NO_DATA)
        return
    data = getattr(metric, kind)
    if not metric.name:
        out.refused.extend([NO_NAME] * len(data.data_points))
        return
    common = _metric_properties(metric, kind, data)
    identity = (resource.identity, scope_identity, metric.name.encode(), kind.encode())
    for point in data.data_points:
        out.take(point_event, metric.name, point, resource.agent, scope, common, identity)


def _metric_properties(metric: Metric, kind: str, data: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"metric.type": kind}
    if metric.unit:
        found["metric.unit"] = metric.unit
    temporality = TEMPORALITIES.get(getattr(data, "aggregation_temporality", 0))
    if temporality is not None:
        found["metric.temporality"] = temporality
    if kind == "sum":
        found["metric.monotonic"] = data.is_monotonic
    return found


def point_event(
    name: str,
    point: Point,
    agent: str | None,
    scope: dict[str, Any],
    common: dict[str, Any],
    identity: tuple[bytes, ...],
) -> dict[str, Any]:
    at = time_ms(point.time_unix_nano)
    start = time_ms(point.start_time_unix_nano)
    if at is None:
        raise Refused(NO_TIME)
    properties = {**scope, **attributes(point.attributes), **common}
    if start is not None:
        properties["metric.start_time"] = rfc3339(start)
    if point.flags & NO_RECORDED_VALUE:
        properties["metric.no_recorded_value"] = True
    if isinstance(point, NumberDataPoint):
        value_kind = point.WhichOneof("value")
        if value_kind is not None:
            properties["metric.value"] = getattr(point, value_kind)
    elif isinstance(point, HistogramDataPoint):
        _add_totals(point, properties)
        properties["metric.bucket_counts"] = list(point.bucket_counts)
        properties["metric.explicit_bounds"] = list(point.explicit_bounds)
    elif isinstance(point, ExponentialHistogramDataPoint):
        _add_totals(point, properties)
        properties["metric.scale"] = point.scale
        properties["metric.zero_count"] = point.zero_count
        properties["metric.zero_threshold"] = point.zero_threshold
        for side in ("positive", "negative"):
            buckets = getattr(point, side)
            if buckets.bucket_counts:
                properties[f"metric.{side}.offset"] = buckets.offset
                properties[f"metric.{side}.bucket_counts"] = list(buckets.bucket_counts)
    else:
        properties["metric.count"] = point.count
        properties["metric.sum"] = point.sum
        properties["metric.quantiles"] = [
            {"quantile": q.quantile, "value": q.value} for q in point.quantile_values
        ]

    # Exemplars are left out of the identity as they are out of the event, so the same
    # point hashes alike whichever encoding brought it.
    if not isinstance(point, SummaryDataPoint) and point.exemplars:
        point.ClearField("exemplars")
    return wire_event(
        name,
        properties,
        identity_uuid(at, b"metric", *identity, point.SerializeToString(deterministic=True)),
        agent,
        rfc3339(at),
    )


def _add_totals(
    point: HistogramDataPoint | ExponentialHistogramDataPoint, properties: dict[str, Any]
) -> None:
    properties["metric.count"] = point.count
    for field in ("sum", "min", "max"):
        if point.HasField(field):
            properties[f"metric.{field}"] = getattr(point, field)
