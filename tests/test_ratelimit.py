"""The upload rate limit shapes: what is over a rule waits and becomes eligible later,
oldest first; only what a source has waiting beyond its backlog cap is refused."""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_telemetryd.config_values import RateRule
from agent_telemetryd.ratelimit import ALL_SOURCES_FACTOR, UploadRateLimiter

DEFAULT_RULES = [RateRule(60, 60.0), RateRule(1000, 3600.0)]
T0 = 1_800_000_000_000  # ms; a whole hour, so clock windows start here


def most_in_any_window(times: list[int], per_ms: int) -> int:
    """The most of `times` (sorted) inside any window (t - per, t]."""
    most, left = 0, 0
    for right, at in enumerate(times):
        while times[left] <= at - per_ms:
            left += 1
        most = max(most, right - left + 1)
    return most


def test_a_busy_minute_waits_instead_of_being_dropped() -> None:
    """180 events in one minute (3 a second): 60 at once, the rest in the next minutes."""
    limiter = UploadRateLimiter(DEFAULT_RULES)
    arrivals = [T0 + i * 333 for i in range(180)]
    eligible = [limiter("planner", at) for at in arrivals]
    assert None not in eligible
    stamps = [at for at in eligible if at is not None]
    assert stamps[:60] == arrivals[:60]  # the burst goes at once
    assert all(s > a for s, a in zip(stamps[60:], arrivals[60:], strict=True))
    assert stamps == sorted(stamps)  # oldest first
    assert most_in_any_window(stamps, 60_000) == 60
    # Events 61-120 become eligible a minute after 1-60, and 121-180 a minute later.
    assert stamps[60] == arrivals[0] + 60_000 and stamps[120] == arrivals[0] + 120_000
    assert stamps[-1] - T0 < 140_000
    assert limiter.waiting("planner", arrivals[-1]) == 120


def test_the_hourly_rule_spreads_a_long_busy_run_over_hours() -> None:
    limiter = UploadRateLimiter(DEFAULT_RULES)
    stamps = [limiter("worker", T0 + i * 100) for i in range(2500)]
    assert None not in stamps
    times = [at for at in stamps if at is not None]
    assert most_in_any_window(times, 60_000) == 60
    assert most_in_any_window(times, 3_600_000) == 1000
    assert times[1000] >= times[0] + 3_600_000  # the 1,001st waits for the hour to turn


def test_only_what_is_beyond_the_backlog_cap_is_refused() -> None:
    limiter = UploadRateLimiter(DEFAULT_RULES, backlog=50)
    decisions = [limiter("runaway", T0) for _ in range(200)]
    assert decisions[:60] == [T0] * 60
    assert all(at is not None and at > T0 for at in decisions[60:110])
    assert decisions[110:] == [None] * 90
    assert limiter("polite", T0) == T0  # another source has its own window and backlog
    # As the waiting events become eligible, room opens again behind them.
    assert limiter("runaway", T0 + 61_000) is not None


def test_a_source_rotating_its_name_is_held_by_the_all_sources_limit() -> None:
    limiter = UploadRateLimiter(DEFAULT_RULES)
    stamps = [limiter(f"agent-{i}", T0 + i * 10) for i in range(2000)]
    assert None not in stamps
    per_minute = Counter(at // 60_000 for at in stamps if at is not None)
    # Each name alone would pass; together they get 10x the per-source minute, a clock
    # minute at a time.
    assert sorted(per_minute.values(), reverse=True) == [600, 600, 600, 200]
    assert stamps[:600] == [T0 + i * 10 for i in range(600)]  # the first 600 at once
    assert all(at is not None and at >= T0 + 60_000 for at in stamps[600:])


def test_all_sources_together_hold_ten_backlogs_at_most() -> None:
    limiter = UploadRateLimiter([RateRule(1, 60.0)], backlog=5)
    outcomes = [limiter(f"agent-{i // 10}", T0) for i in range(1000)]  # 100 names
    # One a minute each, ten a minute for everyone: ten go now, and no more than ten
    # backlogs wait, however many names share them.
    assert sum(1 for at in outcomes if at == T0) == ALL_SOURCES_FACTOR
    assert sum(1 for at in outcomes if at is not None and at > T0) == 5 * ALL_SOURCES_FACTOR


def test_seeding_continues_the_schedule_a_restart_would_reset() -> None:
    limiter = UploadRateLimiter(DEFAULT_RULES)
    limiter.seed("planner", [T0 + i * 500 for i in range(60)], now_ms=T0 + 30_000)
    assert limiter("planner", T0 + 30_000) == T0 + 60_000
    assert limiter("other", T0 + 30_000) == T0 + 30_000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(min_value=0, max_value=5_000)),
        min_size=1,
        max_size=400,
    ),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=3, max_value=40),
)
def test_every_rule_holds_whatever_arrives(
    arrivals: list[tuple[str, int]], count: int, backlog: int
) -> None:
    rules = [RateRule(count, 1.0), RateRule(count * 3, 10.0)]
    limiter = UploadRateLimiter(rules, backlog=backlog)
    now = T0
    by_source: dict[str, list[int]] = defaultdict(list)
    for source, gap in arrivals:
        now += gap
        at = limiter(source, now)
        if at is None:
            # Refused only behind a full backlog of its own or of everyone's.
            assert limiter.waiting(source, now) >= backlog or backlog * 10 <= sum(
                limiter.waiting(s, now) for s in "abc"
            )
            continue
        assert at >= now
        assert not by_source[source] or at >= by_source[source][-1]
        by_source[source].append(at)
    everyone: list[int] = []
    for times in by_source.values():
        assert most_in_any_window(times, 1000) <= count
        assert most_in_any_window(times, 10_000) <= count * 3
        everyone.extend(times)
    per_second = Counter(at // 1000 for at in everyone)
    assert max(per_second.values()) <= count * ALL_SOURCES_FACTOR
