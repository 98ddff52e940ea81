"""The statistics of observed verification (verification/bounds.py): a confidence sequence that holds however
often a growing window is judged, the p95 judged through it, and the exact two-sided binomial test."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotgen_ops.verification.bounds import PRIOR, binomial_p_value, quantile_verdict, rate_bounds


def _log_mixture(p: float, s: int, f: int) -> float:
    """Robbins' mixture, written out again from its definition (a Beta(a, b) prior over the rate)."""
    a, b = PRIOR
    log_b = lambda x, y: math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)  # noqa: E731
    return log_b(a + s, b + f) - log_b(a, b) - s * math.log(p) - f * math.log1p(-p)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([0.01, 0.05, 0.2]))
def test_the_bounds_hold_the_estimate_and_sit_where_the_mixture_reaches_one_over_alpha(sn, alpha):
    s, n = sn
    lower, upper = rate_bounds(s, n, alpha)
    assert 0.0 <= lower <= upper <= 1.0
    if n == 0:
        assert (lower, upper) == (0.0, 1.0)
        return
    assert lower <= s / n <= upper
    threshold = math.log(1 / alpha)
    for edge, at_the_end in ((lower, 0.0), (upper, 1.0)):
        if edge != at_the_end:  # an inner edge: the mixture crosses 1/alpha there, not before
            assert _log_mixture(edge, s, n - s) == pytest.approx(threshold, abs=1e-6)
    if 0.0 < lower:
        assert _log_mixture(lower * 0.999, s, n - s) > threshold
    if upper < 1.0:
        assert _log_mixture(min(1 - 1e-12, upper + (1 - upper) * 0.001), s, n - s) > threshold


def test_none_seen_of_many_bounds_the_rate_from_above_only():
    lower, upper = rate_bounds(0, 1000, 0.01)
    assert lower == 0.0
    # (1 - p)^n = alpha * B(a, n + b) / B(a, b): the upper edge in closed form for no successes
    a, b = PRIOR
    log_ratio = (math.lgamma(a) + math.lgamma(1000 + b) - math.lgamma(a + 1000 + b)) - (
        math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    assert upper == pytest.approx(1 - math.exp((math.log(0.01) + log_ratio) / 1000), rel=1e-6)
    assert 0.003 < upper < 0.01


def test_more_events_narrow_the_bounds():
    widths = [rate_bounds(n // 10, n, 0.01) for n in (30, 300, 3000, 30000)]
    spans = [up - low for low, up in widths]
    assert spans == sorted(spans, reverse=True) and spans[-1] < 0.02


def test_bad_arguments_are_refused():
    for args in ((3, 2, 0.01), (-1, 2, 0.01), (1, 2, 0.0), (1, 2, 1.0)):
        with pytest.raises(ValueError):
            rate_bounds(*args)
    with pytest.raises(ValueError):
        binomial_p_value(5, 4, 0.5)


def test_judged_at_every_peek_the_sequence_still_holds_the_true_rate():
    """The point of a confidence sequence: look after every few events, and the chance that *any* look
    excludes the true rate stays under alpha. A fixed-sample interval looked at as often does not."""
    rng = random.Random(20261207)
    alpha, p, runs, length = 0.05, 0.05, 300, 600
    peeks = list(range(10, length + 1, 10))
    sequence_misses = wald_misses = 0
    for _ in range(runs):
        successes, seen_miss, wald_miss, n = 0, False, False, 0
        for peek in peeks:
            while n < peek:
                successes += rng.random() < p
                n += 1
            lower, upper = rate_bounds(successes, n, alpha)
            seen_miss |= not (lower <= p <= upper)
            centre = successes / n
            radius = 1.96 * math.sqrt(max(centre * (1 - centre), 1e-12) / n)
            wald_miss |= not (centre - radius <= p <= centre + radius)
        sequence_misses += seen_miss
        wald_misses += wald_miss
    assert sequence_misses / runs <= alpha
    assert wald_misses / runs > 2 * alpha  # why a fixed-sample interval is not used


def test_the_p95_is_judged_through_the_share_at_or_below_the_limit():
    assert quantile_verdict(2000, 2000, 0.95, 0.01) == "pass"  # every call within the limit
    assert quantile_verdict(1000, 2000, 0.95, 0.01) == "fail"  # half of them over it
    assert quantile_verdict(29, 30, 0.95, 0.01) == "inconclusive"  # too few to say either way
    assert quantile_verdict(0, 0, 0.95, 0.01) == "inconclusive"
    # at the edges: the verdict flips exactly where the bounds cross 0.95
    n = 5000
    fails = [k for k in range(4600, n + 1, 5) if quantile_verdict(k, n, 0.95, 0.01) == "fail"]
    passes = [k for k in range(4600, n + 1, 5) if quantile_verdict(k, n, 0.95, 0.01) == "pass"]
    assert fails and passes and max(fails) < min(passes)
    assert rate_bounds(max(fails), n, 0.01)[1] < 0.95 <= rate_bounds(max(fails) + 5, n, 0.01)[1]
    assert rate_bounds(min(passes), n, 0.01)[0] >= 0.95 > rate_bounds(min(passes) - 5, n, 0.01)[0]


def _exact_p_value(k: int, n: int, p: Fraction) -> Fraction:
    pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    return sum((x for x in pmf if x <= pmf[k]), Fraction(0))


def test_the_binomial_test_matches_known_values():
    assert binomial_p_value(3, 10, 0.5) == pytest.approx(0.34375)
    assert binomial_p_value(0, 10, 0.5) == pytest.approx(2 / 1024)
    assert binomial_p_value(5, 10, 0.5) == pytest.approx(1.0)
    assert binomial_p_value(0, 0, 0.3) == 1.0


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([Fraction(1, 100), Fraction(1, 20), Fraction(1, 4), Fraction(1, 2), Fraction(9, 10)]))
def test_the_binomial_test_matches_exact_arithmetic(kn, p):
    k, n = kn
    assert binomial_p_value(k, n, float(p)) == pytest.approx(float(_exact_p_value(k, n, p)), rel=1e-9, abs=1e-15)


def test_a_rate_of_zero_or_one_admits_only_its_one_count():
    assert binomial_p_value(0, 50, 0.0) == 1.0 and binomial_p_value(1, 50, 0.0) == 0.0
    assert binomial_p_value(50, 50, 1.0) == 1.0 and binomial_p_value(49, 50, 1.0) == 0.0


def test_a_share_far_from_the_rollout_is_a_mismatch_and_a_near_one_is_not():
    assert binomial_p_value(50, 1000, 0.05) > 0.5
    assert binomial_p_value(60, 1000, 0.05) > 0.001
    assert binomial_p_value(100, 1000, 0.05) < 0.001
    assert binomial_p_value(10, 1000, 0.05) < 0.001
