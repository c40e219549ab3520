"""The daemon's own transform chain (vocabulary, content mask, scrubbing) run on an event's
parts instead of on `Event` objects, with what depends only on the event's shape decided
once per shape. No I/O.

Each transform of the chain is an `Event -> Event` function that makes a new `Event` when
it changes something: for a shim's event that is one or two objects made and dropped per
event, and three calls that each look the shape up again. Here the shape (event name,
agent name, property names in order) is looked up once, and it gives the renaming, whether
any name may be content, and the scrubbed event and agent names. The values are still
read by every event: the renaming reads its number-like fields, the mask looks into
objects and arrays, and the scrubber checks every string. Each step calls the
transform's own method for properties, so what is stored is what the chain of `Event`
transforms stores (tests/test_ingest_fast_paths.py holds the two side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from agent_telemetryd.analytics.vocabulary import RenamePlan, Vocabulary
from agent_telemetryd.privacy.content import AGENT_CONTENT_NAMES, ContentMask
from agent_telemetryd.privacy.scrub import Scrubber
from agent_telemetryd.shape_plans import remember

# What JSON makes besides objects and arrays: the mask has nothing to look into.
_FLAT_TYPES = frozenset({str, int, float, bool, type(None)})


class _ShapePlan(NamedTuple):
    rename: RenamePlan | None  # None: the renaming depends on the values (Vocabulary)
    may_hold_content: bool  # a content name among the (renamed) names, or one its agent has
    name: str  # the event name, scrubbed
    agent: str | None  # the agent name, scrubbed


class TransformChain:
    """`Vocabulary`, then `ContentMask` when content is not kept, then `Scrubber`: the
    chain `privacy_transforms` makes when no allowlist is set. `of()` recognises it."""

    def __init__(
        self, vocabulary: Vocabulary, mask: ContentMask | None, scrubber: Scrubber
    ) -> None:
        self.vocabulary = vocabulary
        self.mask = mask
        self.scrubber = scrubber
        self._plans: dict[tuple[str, str | None, tuple[str, ...]], _ShapePlan] = {}

    @classmethod
    def of(cls, transforms: Sequence[object]) -> TransformChain | None:
        """The chain for `transforms` when they are exactly the daemon's own; None for
        any other list (an allowlist, a test's transform), which runs event by event."""
        kinds = tuple(map(type, transforms))
        if kinds == (Vocabulary, ContentMask, Scrubber):
            vocabulary, mask, scrubber = transforms
            return cls(vocabulary, mask, scrubber)  # type: ignore[arg-type]
        if kinds == (Vocabulary, Scrubber):
            vocabulary, scrubber = transforms
            return cls(vocabulary, None, scrubber)  # type: ignore[arg-type]
        return None

    def __call__(
        self, name: str, properties: dict[str, Any], agent: str | None
    ) -> tuple[str, dict[str, Any], str | None]:
        """The event's name, properties and agent as the chain of transforms leaves them.
        May raise whatever a transform raises."""
        shape = (name, agent, tuple(properties))
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plan(shape)
        rename = plan.rename
        may_hold_content = plan.may_hold_content
        if rename is None or (
            rename.numeric and str in map(type, map(properties.__getitem__, rename.numeric))
        ):
            # The renaming depends on the values: the vocabulary's full path, and the names
            # it gives are not those planned.
            properties = self.vocabulary.properties(name, properties)
            may_hold_content = True
        elif rename.keys is not None:
            # What the vocabulary makes of this shape (its own plan): names replaced in C.
            properties = dict(zip(rename.keys, properties.values()))  # noqa: B905
        mask = self.mask
        if mask is not None and (
            may_hold_content or not _FLAT_TYPES.issuperset(map(type, properties.values()))
        ):
            # No content name and no object or array to look into: nothing the mask takes.
            properties = mask.properties(properties, name)
        return plan.name, self.scrubber.properties(properties), plan.agent

    def _plan(self, shape: tuple[str, str | None, tuple[str, ...]]) -> _ShapePlan:
        name, agent, keys = shape
        rename = self.vocabulary.plan(name, keys)
        if rename is not None:
            renamed = rename.keys if rename.keys is not None else keys
            mask = self.mask
            may_hold_content = mask is not None and (
                name in AGENT_CONTENT_NAMES or not mask.all_plain(dict.fromkeys(renamed).keys())
            )
        else:
            may_hold_content = True
        text = self.scrubber.text
        plan = _ShapePlan(rename, may_hold_content, text(name), text(agent) if agent else agent)
        size = len(name) + len(agent or "") + sum(map(len, keys))
        remember(self._plans, shape, plan, len(keys), size)
        return plan
