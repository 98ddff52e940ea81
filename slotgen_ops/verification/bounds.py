"""The statistics of observed verification: bounds that stay valid however often a growing window is judged.

A guard judges the same window every few seconds as it grows. A fixed-sample
interval re-checked at every peek would cross any threshold sooner or later
by chance alone, so the error rate and the p95 latency are judged with a
*confidence sequence*: a sequence of intervals that all hold the true value
at once, with probability at least 1 - alpha, at every size the window ever
has (time-uniform, "anytime-valid").

`rate_bounds` is Robbins' beta-binomial mixture (H. Robbins, "Statistical
methods related to the law of the iterated logarithm", Ann. Math. Statist. 41,
1970; S. R. Howard, A. Ramdas, J. McAuliffe, J. Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49, 2021,
section 3): for a true rate p, the mixture of likelihood ratios

    M_t(p) = B(a + S, b + F) / B(a, b) / (p^S (1 - p)^F)       (S successes, F failures)

is a nonnegative martingale with M_0 = 1 under p, so by Ville's inequality
P(M_t(p) >= 1/alpha for some t) <= alpha. The set {p : M_t(p) < 1/alpha} is
therefore an interval that holds p at every t at once. It is exact for 0/1
outcomes: no normal approximation, valid from the first event.

The p95 latency needs no bound of its own. "p95 <= L" is "P(latency <= L) >=
0.95", the rate of one 0/1 outcome per event, so `quantile_verdict` judges it
with the same sequence.

`binomial_p_value` is the exact two-sided binomial test (the probability of
every count no more likely than the one seen): the share check's sample-ratio
mismatch test, judged at a small alpha once per judgement.
"""

from __future__ import annotations

import math

__all__ = ["binomial_p_value", "quantile_verdict", "rate_bounds", "PRIOR"]

#: The mixture's Beta(a, b) prior: Jeffreys', whose intervals are tightest near rates of a few percent.
PRIOR = (0.5, 0.5)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _log_mixture(p: float, successes: int, failures: int) -> float:
    """log M_t(p); +inf where p is impossible given what was seen (p = 0 with a success, p = 1 with a failure)."""
    a, b = PRIOR
    if (p <= 0.0 and successes) or (p >= 1.0 and failures):
        return math.inf
    log_likelihood = (successes * math.log(p) if successes else 0.0) + (failures * math.log1p(-p) if failures else 0.0)
    return _log_beta(a + successes, b + failures) - _log_beta(a, b) - log_likelihood


def rate_bounds(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """The (lower, upper) bounds at `trials` of a confidence sequence at 1 - alpha for a rate.

    Valid simultaneously at every number of trials: a window judged again and
    again as it grows is covered as a whole. No trials: (0, 1).
    """
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes in {trials} trials")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha {alpha} is not in (0, 1)")
    if trials == 0:
        return 0.0, 1.0
    failures = trials - successes
    threshold = math.log(1.0 / alpha)
    centre = successes / trials

    def inside(p: float) -> bool:
        return _log_mixture(p, successes, failures) < threshold

    def edge(outside: float, within: float) -> float:
        for _ in range(60):  # the mixture is convex in p: one crossing on each side of the centre
            middle = (outside + within) / 2
            if inside(middle):
                within = middle
            else:
                outside = middle
        return within

    lower = 0.0 if inside(0.0) else edge(0.0, centre)
    upper = 1.0 if inside(1.0) else edge(1.0, centre)
    return lower, upper


def quantile_verdict(at_or_below: int, trials: int, quantile: float, alpha: float) -> str:
    """Whether the `quantile` of a measure is at or below a limit, from how many of `trials` were at or below it.

    "pass": the quantile is at or below the limit (the share at or below it is surely >= quantile);
    "fail": it is surely above (that share is surely < quantile); "inconclusive": the bounds straddle it.
    """
    lower, upper = rate_bounds(at_or_below, trials, alpha)
    if upper < quantile:
        return "fail"
    if lower >= quantile:
        return "pass"
    return "inconclusive"


def binomial_p_value(successes: int, trials: int, p: float) -> float:
    """The exact two-sided p-value of `successes` in `trials` under rate `p` (1.0 with no trials)."""
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes in {trials} trials")
    if trials == 0:
        return 1.0
    if p <= 0.0 or p >= 1.0:
        expected = 0 if p <= 0.0 else trials
        return 1.0 if successes == expected else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(trials + 1)

    def log_pmf(k: int) -> float:
        return base - math.lgamma(k + 1) - math.lgamma(trials - k + 1) + k * log_p + (trials - k) * log_q

    seen = log_pmf(successes)
    slack = seen + 1e-9 * max(1.0, abs(seen))  # counts as likely as the one seen, within rounding
    total = 0.0
    for k in range(trials + 1):
        value = log_pmf(k)
        if value <= slack:
            total += math.exp(value)
    return min(1.0, total)
