"""The `[otlp-grpc]` extra: whether it is there, and the words for when it is not.

Its own module, with no imports of the daemon's, so that `doctor` can say the same as the
daemon without loading the daemon's receivers (nor gRPC itself).
"""

from __future__ import annotations

import importlib.util

GRPC_MISSING = (
    "otlp_grpc_port is set but gRPC support is not installed;"
    " install it with: pip install 'agent-telemetry[otlp-grpc]'"
)


def grpc_installed() -> bool:
    """Whether grpcio can be found (not imported: that takes a tenth of a second)."""
    return importlib.util.find_spec("grpc") is not None
