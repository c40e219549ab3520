"""A bounded memory of what was planned once per event shape. No I/O.

Agents send few shapes (an event name with its property names), so planning each shape
once saves the same decisions per event. A client could send endless new shapes, so only
shapes of a few short names are remembered, at most `MAX_SHAPES` of them (~6 KB each at
most), and all are forgotten when that many are: a larger shape is planned each time.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

MAX_SHAPES = 1024
MAX_SHAPE_NAMES = 64
MAX_SHAPE_CHARS = 2048


def remember(
    plans: dict[Any, Any], shape: Hashable, plan: Any, names: int, characters: int
) -> None:
    """Keep `plan` for `shape` (of `names` names, `characters` long) if it is small."""
    if names <= MAX_SHAPE_NAMES and characters <= MAX_SHAPE_CHARS:
        if len(plans) >= MAX_SHAPES:
            plans.clear()
        plans[shape] = plan
