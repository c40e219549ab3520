"""OpenTelemetry in: OTLP requests decoded and mapped to the daemon's wire events. No I/O.

`decode.decode(signal, body, encoding)` gives a `Decoded`: the events, one reason per
refused item, and the resources they came from (`resources.resource_event` makes the one
event a resource is kept as). `answers` encodes what the receiver answers.
"""
