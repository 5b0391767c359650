"""Confidence intervals, operating points and sample sizes used by every claim test.

Notation: ``z = Phi^-1(1 - alpha/2)`` is the two-sided normal quantile, ``p = s/n``.

Wilson score interval for a proportion (trials ``n == 0`` gives ``(0, 1)``)::

    centre = (p + z^2/(2n)) / (1 + z^2/n)
    half   = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/(4n^2))
    (lower, upper) = (centre - half, centre + half)

Newcombe's hybrid score interval for ``d = p1 - p2`` (Newcombe 1998, method 10), with
``(l_i, u_i)`` the Wilson interval of ``p_i``::

    lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
    upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)

Percentile bootstrap: draw ``n_boot`` resamples with replacement, compute the statistic on
each, report the ``alpha/2`` and ``1 - alpha/2`` quantiles; the estimate is the statistic on
the original sample. ``paired=True`` resamples the index of (a_i, b_i) pairs jointly.

Pearson correlation, Fisher z interval (``n >= 4``)::

    (lower, upper) = tanh(atanh(r) -/+ z / sqrt(n - 3))

Spearman correlation (Pearson on average ranks), Fisher z with the Bonett-Wright (2000)
standard error::

    (lower, upper) = tanh(atanh(r_s) -/+ z * sqrt((1 + r_s^2/2) / (n - 3)))

Rates at a threshold (a point is flagged when ``score >= threshold``), each with its Wilson
interval over the stated denominator::

    tpr = TP / (TP + FN)      fpr = FP / (FP + TN)
    precision = TP / (TP + FP)      false_discovery_rate = FP / (TP + FP)

Models per arm to detect a difference ``d`` of two proportions around ``p`` with a
two-sided test at level ``alpha`` and power ``1 - beta`` (normal approximation), with
``p1 = p + d/2``, ``p2 = p - d/2`` clipped into (0, 1), ``pbar = (p1 + p2)/2``, ``q = 1 - p``::

    n = (z_{1-alpha/2} sqrt(2 pbar qbar) + z_{1-beta} sqrt(p1 q1 + p2 q2))^2 / d^2

Observations needed to shrink an interval (half width proportional to ``1/sqrt(n)``)::

    n_needed = n_now * (half_width_now / target_half_width)^2
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from scipy import stats as scipy_stats

# Bootstrap index matrices are drawn in chunks of at most this many entries to bound memory.
_MAX_INDICES_PER_CHUNK = 2**22
# Bootstrap correlations give up when more than this share of resamples has zero variance.
_MAX_DEGENERATE_SHARE = 0.10
# Keeps p +/- d/2 strictly inside (0, 1) in models_for_difference.
_PROPORTION_CLIP = 1e-9


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    ``n`` is the number of observations behind it (the denominator for a proportion);
    ``method`` names how the interval was computed.
    """

    estimate: float
    lower: float
    upper: float
    n: int
    method: str

    @property
    def width(self) -> float:
        return self.upper - self.lower

    def contains(self, value: float) -> bool:
        return bool(self.lower <= value <= self.upper)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OperatingPoint:
    """The largest score threshold reaching a target TPR, with the TPR and FPR there."""

    threshold: float
    tpr: Interval
    fpr: Interval


# --------------------------------------------------------------------------- validation


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")


def _normal_quantile(alpha: float) -> float:
    return float(scipy_stats.norm.ppf(1 - alpha / 2))


def _finite_1d(name: str, values) -> np.ndarray:
    """``values`` as a 1-D float array, refusing NaN and infinite entries."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    n_nan = int(np.isnan(array).sum())
    n_inf = int(np.isinf(array).sum())
    if n_nan or n_inf:
        raise ValueError(f"{name} has {n_nan} NaN and {n_inf} infinite values out of {array.size}; "
                         "drop or impute them before computing intervals")
    return array


def _check_counts(successes, trials) -> tuple[np.ndarray, np.ndarray]:
    successes = np.asarray(successes, dtype=float)
    trials = np.asarray(trials, dtype=float)
    if not (np.all(np.isfinite(successes)) and np.all(np.isfinite(trials))):
        raise ValueError("successes and trials must be finite numbers")
    if np.any(successes < 0) or np.any(trials < 0):
        raise ValueError("successes and trials must be non-negative")
    if np.any(successes > trials):
        raise ValueError("successes must not exceed trials")
    return successes, trials


def _check_n_boot(n_boot: int) -> None:
    if int(n_boot) != n_boot or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100 for a percentile interval, got {n_boot}")


def _scalar_or_array(values: np.ndarray):
    return float(values) if values.ndim == 0 else values


# --------------------------------------------------------------------------- proportions


def wilson_interval(successes, trials, alpha: float = 0.05):
    """Wilson score interval ``(lower, upper)`` for ``successes / trials``; broadcasts arrays."""
    _check_alpha(alpha)
    successes, trials = _check_counts(successes, trials)
    z = _normal_quantile(alpha)
    safe_trials = np.where(trials > 0, trials, 1.0)
    p_hat = successes / safe_trials
    shrink = 1 + z**2 / safe_trials
    centre = (p_hat + z**2 / (2 * safe_trials)) / shrink
    half = z / shrink * np.sqrt(p_hat * (1 - p_hat) / safe_trials + z**2 / (4 * safe_trials**2))
    # Rounding can push a bound a hair past p_hat at 0 or n successes; the exact bound never does.
    lower = np.where(trials > 0, np.clip(np.minimum(centre - half, p_hat), 0.0, 1.0), 0.0)
    upper = np.where(trials > 0, np.clip(np.maximum(centre + half, p_hat), 0.0, 1.0), 1.0)
    return _scalar_or_array(lower), _scalar_or_array(upper)


def newcombe_difference(s1, n1, s2, n2, alpha: float = 0.05):
    """``(estimate, lower, upper)`` for ``s1/n1 - s2/n2`` by Newcombe's hybrid score method.

    Broadcasts arrays. Where ``n1`` or ``n2`` is 0 the estimate is NaN and the interval (-1, 1).
    """
    s1, n1 = _check_counts(s1, n1)
    s2, n2 = _check_counts(s2, n2)
    lower1, upper1 = wilson_interval(s1, n1, alpha)
    lower2, upper2 = wilson_interval(s2, n2, alpha)
    empty = (n1 == 0) | (n2 == 0)
    p1 = s1 / np.where(n1 > 0, n1, 1.0)
    p2 = s2 / np.where(n2 > 0, n2, 1.0)
    estimate = p1 - p2
    lower = estimate - np.sqrt((p1 - lower1) ** 2 + (upper2 - p2) ** 2)
    upper = estimate + np.sqrt((upper1 - p1) ** 2 + (p2 - lower2) ** 2)
    estimate = np.where(empty, np.nan, estimate)
    lower = np.where(empty, -1.0, lower)
    upper = np.where(empty, 1.0, upper)
    return _scalar_or_array(estimate), _scalar_or_array(lower), _scalar_or_array(upper)


def _wilson(successes: int, trials: int, alpha: float) -> Interval:
    lower, upper = wilson_interval(successes, trials, alpha)
    estimate = successes / trials if trials > 0 else math.nan
    return Interval(estimate, lower, upper, int(trials), "wilson")


# --------------------------------------------------------------------------- bootstrap


def _bootstrap_replicates(statistic: Callable[..., np.ndarray], sizes: tuple[int, ...],
                          n_boot: int, seed: int) -> np.ndarray:
    """``statistic`` on ``n_boot`` resamples; it gets one ``(rows, size)`` index matrix per size."""
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _MAX_INDICES_PER_CHUNK // sum(sizes))
    replicates = []
    for start in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - start)
        indices = [rng.integers(0, size, size=(rows, size)) for size in sizes]
        replicates.append(statistic(*indices))
    return np.concatenate(replicates)


def _percentile_interval(estimate: float, replicates: np.ndarray, n: int, alpha: float,
                         method: str) -> Interval:
    lower, upper = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return Interval(float(estimate), float(lower), float(upper), n, method)


def _check_sample(name: str, values) -> np.ndarray:
    array = _finite_1d(name, values)
    if array.size < 2:
        raise ValueError(f"{name} needs at least 2 observations for a bootstrap, got {array.size}")
    return array


def bootstrap_mean(x, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval for the mean of ``x``."""
    _check_alpha(alpha)
    _check_n_boot(n_boot)
    x = _check_sample("x", x)
    replicates = _bootstrap_replicates(lambda idx: x[idx].mean(axis=1), (x.size,), n_boot, seed)
    return _percentile_interval(x.mean(), replicates, x.size, alpha,
                                f"bootstrap percentile mean ({n_boot} resamples)")


def bootstrap_difference(a, b, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0,
                         paired: bool = False) -> Interval:
    """Percentile bootstrap interval for ``mean(a) - mean(b)``.

    ``paired=True`` treats ``(a_i, b_i)`` as one observation (equal lengths required) and
    reports ``n`` = number of pairs; otherwise the samples are resampled independently and
    ``n = len(a) + len(b)``.
    """
    _check_alpha(alpha)
    _check_n_boot(n_boot)
    a = _check_sample("a", a)
    b = _check_sample("b", b)
    estimate = a.mean() - b.mean()
    if paired:
        if a.size != b.size:
            raise ValueError(f"paired bootstrap needs equal lengths, got {a.size} and {b.size}")
        replicates = _bootstrap_replicates(lambda idx: a[idx].mean(axis=1) - b[idx].mean(axis=1),
                                           (a.size,), n_boot, seed)
        return _percentile_interval(estimate, replicates, a.size, alpha,
                                    f"paired bootstrap percentile difference ({n_boot} resamples)")
    replicates = _bootstrap_replicates(lambda ia, ib: a[ia].mean(axis=1) - b[ib].mean(axis=1),
                                       (a.size, b.size), n_boot, seed)
    return _percentile_interval(estimate, replicates, a.size + b.size, alpha,
                                f"bootstrap percentile difference ({n_boot} resamples)")


# --------------------------------------------------------------------------- correlation


def _check_pair(x, y, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    x = _finite_1d("x", x)
    y = _finite_1d("y", y)
    if x.size != y.size:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < minimum:
        raise ValueError(f"correlation needs at least {minimum} pairs, got {x.size}")
    for name, values in (("x", x), ("y", y)):
        if np.ptp(values) == 0:
            raise ValueError(f"{name} is constant, so its correlation is undefined")
    return x, y


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of every row of ``x`` with the same row of ``y``."""
    x_centred = x - x.mean(axis=-1, keepdims=True)
    y_centred = y - y.mean(axis=-1, keepdims=True)
    covariance = (x_centred * y_centred).sum(axis=-1)
    r = covariance / np.sqrt((x_centred**2).sum(axis=-1) * (y_centred**2).sum(axis=-1))
    return np.clip(r, -1.0, 1.0)


def _fisher_interval(r: float, standard_error: float, n: int, alpha: float,
                     method: str) -> Interval:
    z = _normal_quantile(alpha)
    with np.errstate(divide="ignore"):  # atanh(+-1) = +-inf gives the degenerate interval (r, r)
        centre = np.arctanh(r)
    lower, upper = np.tanh(centre - z * standard_error), np.tanh(centre + z * standard_error)
    return Interval(float(r), float(lower), float(upper), n, method)


def pearson(x, y, alpha: float = 0.05) -> Interval:
    """Pearson correlation with its Fisher z interval (at least 4 pairs)."""
    _check_alpha(alpha)
    x, y = _check_pair(x, y, minimum=4)
    r = float(_row_pearson(x, y))
    return _fisher_interval(r, 1 / math.sqrt(x.size - 3), x.size, alpha, "pearson fisher z")


def spearman(x, y, alpha: float = 0.05) -> Interval:
    """Spearman correlation with a Fisher z interval, Bonett-Wright standard error (>= 4 pairs)."""
    _check_alpha(alpha)
    x, y = _check_pair(x, y, minimum=4)
    r = float(_row_pearson(scipy_stats.rankdata(x), scipy_stats.rankdata(y)))
    standard_error = math.sqrt((1 + r**2 / 2) / (x.size - 3))
    return _fisher_interval(r, standard_error, x.size, alpha, "spearman fisher z (bonett-wright)")


def bootstrap_correlation(x, y, method: str = "pearson", alpha: float = 0.05,
                          n_boot: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval for a correlation, resampling (x_i, y_i) pairs.

    Resamples in which x or y is constant have no correlation; they are skipped and
    counted in ``method``. More than 10 % of them raises ValueError.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    _check_alpha(alpha)
    _check_n_boot(n_boot)
    x, y = _check_pair(x, y, minimum=4)

    def correlation(x_rows: np.ndarray, y_rows: np.ndarray) -> np.ndarray:
        if method == "spearman":
            x_rows = scipy_stats.rankdata(x_rows, axis=-1)
            y_rows = scipy_stats.rankdata(y_rows, axis=-1)
        degenerate = (np.ptp(x_rows, axis=-1) == 0) | (np.ptp(y_rows, axis=-1) == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(degenerate, np.nan, _row_pearson(x_rows, y_rows))

    estimate = float(correlation(x, y))
    replicates = _bootstrap_replicates(lambda idx: correlation(x[idx], y[idx]), (x.size,),
                                       n_boot, seed)
    n_degenerate = int(np.isnan(replicates).sum())
    if n_degenerate > _MAX_DEGENERATE_SHARE * n_boot:
        raise ValueError(f"{n_degenerate} of {n_boot} resamples had a constant x or y; "
                         f"at most {_MAX_DEGENERATE_SHARE:.0%} allowed. Use more pairs or pearson()")
    return _percentile_interval(
        estimate, replicates[~np.isnan(replicates)], x.size, alpha,
        f"bootstrap percentile {method} ({n_boot} resamples, {n_degenerate} degenerate skipped)")


# --------------------------------------------------------------------------- detection rates


def _check_detection_inputs(scores, is_positive) -> tuple[np.ndarray, np.ndarray]:
    scores = _finite_1d("scores", scores)
    labels = np.asarray(is_positive)
    if labels.shape != scores.shape:
        raise ValueError(f"scores and is_positive must have the same shape, "
                         f"got {scores.shape} and {labels.shape}")
    if scores.size == 0:
        raise ValueError("scores is empty")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise ValueError("is_positive must be boolean or contain only 0 and 1")
    return scores, labels.astype(bool)


def rates_at_threshold(scores, is_positive, threshold: float, alpha: float = 0.05) -> dict:
    """TPR, FPR, precision and false discovery rate (Wilson intervals) when ``score >= threshold``.

    Returns ``{"tpr", "fpr", "precision", "false_discovery_rate"}`` -> :class:`Interval`; a rate
    with an empty denominator has estimate NaN and interval (0, 1).
    """
    _check_alpha(alpha)
    scores, positive = _check_detection_inputs(scores, is_positive)
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    flagged = scores >= threshold
    true_pos = int((flagged & positive).sum())
    false_pos = int((flagged & ~positive).sum())
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    n_flagged = true_pos + false_pos
    return {
        "tpr": _wilson(true_pos, n_positive, alpha),
        "fpr": _wilson(false_pos, n_negative, alpha),
        "precision": _wilson(true_pos, n_flagged, alpha),
        "false_discovery_rate": _wilson(false_pos, n_flagged, alpha),
    }


def fpr_at_tpr(scores, is_positive, target_tpr: float = 0.95, alpha: float = 0.05) -> OperatingPoint:
    """FPR at the largest threshold whose TPR reaches ``target_tpr`` (Wilson intervals)."""
    _check_alpha(alpha)
    if not 0 < target_tpr <= 1:
        raise ValueError(f"target_tpr must lie in (0, 1], got {target_tpr}")
    scores, positive = _check_detection_inputs(scores, is_positive)
    positive_scores = np.sort(scores[positive])[::-1]
    n_positive = positive_scores.size
    if n_positive == 0:
        raise ValueError("is_positive has no positive points, so TPR is undefined")
    # Flagging the k highest-scoring positives gives TPR k / n_positive; take the smallest
    # k reaching the target, compared exactly as rates_at_threshold computes TPR.
    flagged_counts = np.arange(1, n_positive + 1)
    needed = int(flagged_counts[np.argmax(flagged_counts / n_positive >= target_tpr)])
    threshold = float(positive_scores[needed - 1])
    rates = rates_at_threshold(scores, positive, threshold, alpha)
    return OperatingPoint(threshold, rates["tpr"], rates["fpr"])


# --------------------------------------------------------------------------- sample sizes


def models_for_difference(d: float, p: float = 0.5, alpha: float = 0.05, power: float = 0.8) -> int:
    """Models per arm for a two-sided test to detect proportions ``p + d/2`` vs ``p - d/2``."""
    if not 0 < d <= 1:
        raise ValueError(f"d must lie in (0, 1], got {d}")
    if not 0 < p < 1:
        raise ValueError(f"p must lie strictly between 0 and 1, got {p}")
    _check_alpha(alpha)
    if not 0 < power < 1:
        raise ValueError(f"power must lie strictly between 0 and 1, got {power}")
    p1 = min(max(p + d / 2, _PROPORTION_CLIP), 1 - _PROPORTION_CLIP)
    p2 = min(max(p - d / 2, _PROPORTION_CLIP), 1 - _PROPORTION_CLIP)
    p_bar = (p1 + p2) / 2
    z_alpha = _normal_quantile(alpha)
    z_power = float(scipy_stats.norm.ppf(power))
    root_n = (z_alpha * math.sqrt(2 * p_bar * (1 - p_bar))
              + z_power * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) / d
    return math.ceil(round(root_n**2, 9))


def models_to_resolve(interval_half_width_now: float, n_now: int, target_half_width: float) -> int:
    """Total observations (not additional) at which the half width shrinks to the target."""
    for name, value in (("interval_half_width_now", interval_half_width_now), ("n_now", n_now),
                        ("target_half_width", target_half_width)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value}")
    needed = n_now * (interval_half_width_now / target_half_width) ** 2
    # Round away float noise so that e.g. exactly 400.0000000001 does not become 401.
    return math.ceil(round(needed, 9))
