"""Precision and recall of the scrubber on a labelled corpus (tests/scrub_corpus.py).

Every real secret shape, address and home path in the corpus is caught, every look-alike
is kept with its type, and the figures are printed with each run. The few look-alikes the
scrubber takes on purpose are marked in the corpus and listed in the output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from agent_telemetryd.events import Event
from agent_telemetryd.privacy import text_rules
from agent_telemetryd.privacy.scrub import Scrubber, default_scrubber
from tests.scrub_corpus import Case, corpus

CORPUS = corpus()
# Redacting a look-alike costs one value in the user's analytics; missing a secret hands a
# credential to whoever reads the backend. So recall must be 1.0 and precision may give a
# little: at most 3 in 100 redactions may hit a look-alike, and only one the corpus marks as
# a known loss (random 40-character identifiers, 30 bytes of base64, `a::b`).
PRECISION_FLOOR = 0.97


@dataclass
class Figures:
    caught: list[Case]
    missed: list[Case]
    kept: list[Case]
    taken: list[Case]

    @property
    def precision(self) -> float:
        return len(self.caught) / max(1, len(self.caught) + len(self.taken))

    @property
    def recall(self) -> float:
        return len(self.caught) / max(1, len(self.caught) + len(self.missed))


def _outcome(scrubber: Scrubber, case: Case) -> bool:
    """True when the scrubber did what the label asks."""
    event = scrubber(Event("e", case.properties, None, None, case.agent))
    if case.label == "secret":
        text = json.dumps([event.properties, event.agent], ensure_ascii=False)
        exact = case.expected is None or event.properties == case.expected
        return exact and not any(canary in text for canary in case.canaries)
    # Same values and same types: json.dumps tells `1` from `True` and `1.0`, == does not.
    return event.agent == case.agent and json.dumps(event.properties) == json.dumps(case.properties)


def measure(scrubber: Scrubber, cases: Iterable[Case]) -> Figures:
    figures = Figures([], [], [], [])
    for case in cases:
        right = _outcome(scrubber, case)
        if case.label == "secret":
            (figures.caught if right else figures.missed).append(case)
        else:
            (figures.kept if right else figures.taken).append(case)
    return figures


def _describe(cases: Iterable[Case]) -> str:
    return "; ".join(f"{c.kind} {json.dumps(c.properties)[:90]} agent={c.agent}" for c in cases)


def test_the_corpus_is_large_and_labelled_both_ways() -> None:
    secrets = [c for c in CORPUS if c.label == "secret"]
    lookalikes = [c for c in CORPUS if c.label == "keep"]
    assert len(CORPUS) >= 300 and len(secrets) >= 150 and len(lookalikes) >= 150
    assert all(c.canaries for c in secrets)


def test_no_secret_survives_and_look_alikes_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    scrubber = default_scrubber(own_home="/home/runner")
    figures = measure(scrubber, CORPUS)
    with capsys.disabled():
        print(
            f"\nscrub corpus: {len(CORPUS)} cases; secrets caught {len(figures.caught)}, "
            f"missed {len(figures.missed)}; look-alikes kept {len(figures.kept)}, "
            f"taken {len(figures.taken)}; precision {figures.precision:.3f}, "
            f"recall {figures.recall:.3f}\n  taken on purpose: {_describe(figures.taken)}"
        )
    assert not figures.missed, _describe(figures.missed)
    unexpected = [c for c in figures.taken if not c.known_loss]
    assert not unexpected, _describe(unexpected)
    assert figures.precision >= PRECISION_FLOOR


def test_the_bare_aws_secret_rule_earns_its_cost(capsys: pytest.CaptureFixture[str]) -> None:
    """Without the rule no bare 40-character AWS secret key is caught; with it every one is,
    and what it takes besides is only random-looking data of exactly that length."""
    with_rule = default_scrubber(own_home="/home/runner")
    without_rule = Scrubber(
        [
            text_rules.redact_secrets,
            text_rules.redact_emails,
            text_rules.home_paths_rule("/home/runner"),
            text_rules.redact_ips,
            text_rules.cut_rule(4096),
        ]
    )
    bare = [c for c in CORPUS if c.kind == "aws_secret_bare"]
    forty = [c for c in CORPUS if c.kind.startswith("40:")]
    before, after = measure(without_rule, bare + forty), measure(with_rule, bare + forty)
    with capsys.disabled():
        print(
            f"bare AWS secret keys: caught {len(after.caught)} of {len(bare)} with the entropy "
            f"rule, {len(before.caught)} without; 40-character look-alikes taken: "
            f"{len(after.taken)} of {len(forty)} with, {len(before.taken)} without"
        )
    assert len(before.caught) == 0 and len(after.caught) == len(bare)
    assert before.taken == [] and all(c.known_loss for c in after.taken)
