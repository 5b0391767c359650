"""Confidence intervals, operating points and power statements used by every claim test.

Notation: ``z = Phi^-1(1 - alpha/2)`` is the two-sided normal quantile, ``p = s/n``.

Wilson score interval for a proportion (trials ``n == 0`` gives ``(0, 1)``)::

    centre = (p + z^2/(2n)) / (1 + z^2/n)
    half   = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/(4n^2))
    (lower, upper) = (centre - half, centre + half)

Newcombe's hybrid score interval for ``d = p1 - p2`` (Newcombe 1998, method 10), with
``(l_i, u_i)`` the Wilson interval of ``p_i``::

    lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
    upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)

When both proportions are measured on the same n items (paired, ``newcombe_paired_difference``;
Newcombe 1998b, method 10), the two terms of each root are correlated through phi, the
correlation of the two outcomes over the items (2 x 2 counts A both, B first only, C second
only, D neither; phi = 0 where a margin is empty)::

    phi   = (A D - B C) / sqrt((A + B)(C + D)(A + C)(B + D))
    lower = d - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
    upper = d + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2)

Percentile bootstrap: draw ``n_boot`` resamples with replacement, compute the statistic on
each, report the ``alpha/2`` and ``1 - alpha/2`` quantiles; the estimate is the statistic on
the original sample. ``paired=True`` resamples the index of (a_i, b_i) pairs jointly.

Pearson correlation, Fisher z interval (``n >= 4``)::

    (lower, upper) = tanh(atanh(r) -/+ z / sqrt(n - 3))

Where each of the n pairs is a configuration measured from a finite ensemble
(``pearson_with_model_noise``), the pairs need not be bivariate normal, so the pairs' variance
of atanh(r) is the jackknife's (leave one pair out), and the models add the variance V_m of
atanh(r) under resampled models (a bootstrap over each pair's models)::

    V_pairs = (n - 1) / n * sum_i (atanh r_(-i) - mean_j atanh r_(-j))^2,
    (lower, upper) = tanh(atanh(r) -/+ t_{n-1, 1-alpha/2} sqrt(V_pairs + V_m)),

with the t quantile for the n - 1 degrees of freedom of the jackknife. The variance
components stay on the Fisher z scale, where the power statement works too. Given a third
variable g (``given``), r is the partial correlation, the jackknife recomputes it without each
pair and the t quantile has n - 2 degrees of freedom (one spent on g)::

    r_xy.g = (r_xy - r_xg r_yg) / sqrt((1 - r_xg^2)(1 - r_yg^2)),
    (lower, upper) = tanh(atanh(r_xy.g) -/+ t_{n-2, 1-alpha/2} sqrt(V_pairs)).

Every configuration has models of its own, so the jackknife over configurations already holds
the models' noise once; V_m counts it a second time. The raw r needs that second count (with
few configurations its jackknife alone covered 0.90 in the quick calibration design and 0.93
in the full one, README "Coverage"); the partial r does not (the jackknife alone: 0.96 to 0.98
quick, 0.985 full; with V_m 0.995 and 0.9975, wider than the target allows). For the power
statement the partial r's V_pairs splits into the models' part min(V_m, V_pairs) and the rest.

Spearman correlation (Pearson on average ranks), Fisher z with the Bonett-Wright (2000)
standard error::

    (lower, upper) = tanh(atanh(r_s) -/+ z * sqrt((1 + r_s^2/2) / (n - 3)))

Rates at a threshold (a point is flagged when ``score >= threshold``), each with its Wilson
interval over the stated denominator::

    tpr = TP / (TP + FN)      fpr = FP / (FP + TN)
    precision = TP / (TP + FP)      false_discovery_rate = FP / (TP + FP)

Crossed (pigeonhole) bootstrap, the interval of every aggregate that decides a verdict
(Owen 2007; ``../shared/STATISTICS.md``). An estimate built from a K models x n points array
has noise from both ways of it: which points (one draw of the data) and which models (another
seed trains other models). Each replicate resamples both, independently:

- models: with replacement *within each pool* (a pool is the rows trained alike: a subsampled
  ensemble, the base models of a LOO plan, the models left out of one target, the paired model
  index of a removal experiment); a resample is a count per row, and each point's score is
  recomputed from the weighted rows (``MemorizationScores.rescored``);
- points: whole *clusters* (sub-populations; a point of unknown sub-population is its own
  cluster) with replacement, *within strata* fixed by the design (size bins, purged or kept).

Two further runs resample one way only. Under the two-way random-effects approximation
(point effects A = s2_point / n, model effects B = s2_model / K, their interaction
E = s2_resid / (n K)), resampling points only gives ``A + E``, models only ``B + E``, and both
at once ``A + B + 3E`` (Owen 2007: the pigeonhole bootstrap counts the interaction three
times, which over-covers where it dominates, as with few models per point). The interval
uses::

    V = V_points only + V_models only  (= A + B + 2E, at most V_both),

the percentile interval of the crossed replicates with their deviations from the estimate
scaled by sqrt(V / V_both) (``reselects=False``). It still counts the interaction twice: the moment estimate of
``A + B + E``, ``2 (V_points only + V_models only) - V_both``, is noisy enough from 1,000
resamples that its intervals under-covered in ``harness.calibration`` (0.915 for a contrast
of means), while the sum covers within the target there (README, "Coverage"). A statistic that re-selects points inside
each replicate (a threshold or a ranking on the resampled scores: fz-long-tail's high points,
error-is-subpopulation's ends, fractional-definition's operating point; ``reselects=True``) is
not additive in point and model effects, so the one-way runs do not split its variance that
way, and its interval is the crossed replicates' percentile interval unscaled (the enrichment
scaled covered 0.925 in the quick calibration design, its estimate spreading 1.2 times as far
over replicates as the interval implied; unscaled 0.960). A ranking re-taken on noisy values
in each replicate (error-is-subpopulation's ends; ``around_estimate=True``) pulls the replicates
toward what the ends hold on average, so their percentile interval is centred between the
estimate and the truth, and covered 1.000 in both calibration designs; there the interval is
the normal one, ``estimate -/+ z sd(replicates)`` (quick design: 0.995 and 0.990; full: 0.975
and 0.9775). For the enrichment and fractional-definition's operating point the normal interval
covered 0.905 and 0.950 against their percentile intervals' 0.960 and 0.965, so they keep the
percentiles. The components used for power are the point effects
``V_points = V_points only - E`` (E = V_both - V_points only - V_models only) and
``V_models = V - V_points`` (model effects and interaction, both of which shrink with models).

Each one-way variance is the bootstrap's, which for a mean of n units resampled within a group
is (n - 1) / n of the unbiased s^2 / n; with few units (ten LOO targets in a size bin, five
like-sized kept sub-populations) that and z in place of t make the interval too narrow (ten
units: 0.93 of a t interval's width). So the points' one-way run is made stratum by stratum
(each stratum resampled on its own, the rest held), giving each stratum's variance V_h over its
n_h units, and each part is made unbiased: V_h by n_h / (n_h - 1), the models' by u / (u - g)
(u rows in g pools of two or more; exact for pools of equal size). The scaled interval's half
widths are then multiplied by ``t_{nu, 1-alpha/2} / z_{1-alpha/2}``, nu the Welch-Satterthwaite
degrees of freedom of the sum::

    V_points only = sum_h n_h / (n_h - 1) V_h,     V_models only = u / (u - g) V_models,
    nu = (V_points only + V_models only)^2 / (sum_h (n_h / (n_h - 1) V_h)^2 / (n_h - 1) + (u / (u - g) V_models)^2 / (u - g)).

A stratum of one unit resamples to itself and adds nothing. With many units in every stratum
both factors are 1 to within a percent or two.

With K' = f K models per pool, ``V(f) = V_points + V_models / f``. For power 1 - beta at the
distance d between estimate and threshold, ``(z_{1-alpha/2} + z_{1-beta})^2 V(f) = d^2``:

    f = V_models / (d^2 / (z_{1-alpha/2} + z_{1-beta})^2 - V_points),

and when ``V_points`` alone exceeds ``d^2 / (z_{1-alpha/2} + z_{1-beta})^2`` no number of
models decides it: more points are needed. If every replicate equals the estimate, the data
leave nothing to resample (``CrossedInterval.degenerate``) and no verdict rests on it.

Where a level of the design is drawn only a few times, each draw a whole fit of its own (m
embedding networks, each clustering the same points), the estimate is the mean of the m fits'
estimates theta_j, and its variance adds the points' variance V_p of that mean (a bootstrap over
points, every fit recomputed on the same resample) and the fits' spread s^2 = var_j(theta_j)
over m (``mean_over_fits``). The t quantile takes Welch-Satterthwaite's degrees of freedom,
counting V_p as known (a thousand resamples estimate it closely)::

    V = V_p + s^2 / m,     nu = V^2 / ((s^2 / m)^2 / (m - 1)),     mean_j theta_j -/+ t_{nu, 1-alpha/2} sqrt(V).

Where every observation of a rate is the same (every model right on every point of a bin), the
bootstrap has nothing to resample, but a bound still follows from how many independent units
showed no failure. If U units are independent draws whose failure shares X_u in [0, 1] have
mean mu, then P(X_u = 0) <= 1 - mu, so P(no failure in U units) <= (1 - mu)^U, and the
one-sided (1 - alpha) bound (Clopper-Pearson's for 0 failures of U; "the rule of three",
about 3 / U, at alpha = 0.05) is::

    mu <= 1 - alpha^(1/U).

In a models x points array, models and point clusters are each drawn independently, so U
pairs with distinct models and distinct clusters are independent: U = min(models, clusters).

Where the statistic's units were themselves selected by noisy scores (a removal experiment's set
R, those with score >= theta), the bootstrap above holds R fixed, yet another seed's scoring
models select a borderline point or not. A claim that can bound what one point's membership moves
its statistic (|Delta_i|, leakage's near-duplicates) adds that selection variance V_sel =
sum_i f_i Delta_i^2 (f_i: ``harness.removal.selection_flip_rates``) to each side in quadrature,
and counts it with the points in the power statement, since more models per arm do not shrink it
(``with_selection``)::

    lower = estimate - sqrt((estimate - lower)^2 + z^2 V_sel),
    upper = estimate + sqrt((upper - estimate)^2 + z^2 V_sel).

Holm's step-down rule over the one-sided p-values ``p_(1) <= ... <= p_(m)`` of a claim's
cases: reject ``H_(j)`` while ``p_(j) <= alpha / (m - j + 1)`` for every earlier j.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
from scipy import stats as scipy_stats

# Bootstrap index matrices are drawn in chunks of at most this many entries to bound memory.
_MAX_INDICES_PER_CHUNK = 2**22
# Bootstrap correlations give up when more than this share of resamples has zero variance.
_MAX_DEGENERATE_SHARE = 0.10


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


# The map from a statistic to the scale its interval was built on, where a half width reads as
# 1.96 standard deviations: a correlation's Fisher z, and the signed square that undoes a signed
# root taken after the bootstrap (grouped-leave-out's per-point RMS, from its mean square).
TO_SCALE = {"identity": float, "atanh": math.atanh, "signed square": lambda x: math.copysign(x * x, x)}


@dataclass(frozen=True)
class CrossedInterval(Interval):
    """A crossed-bootstrap interval with the variance components behind it (module docstring).

    ``n`` counts the points resampled (the models when no points are); ``models`` the model
    rows. ``undefined`` counts replicates in which the statistic did not exist (e.g. a bin
    emptied); ``degenerate`` says every replicate equalled the estimate.
    """

    models: int = 0
    var_both: float = math.nan
    var_models_only: float = math.nan
    var_points_only: float = math.nan
    var_interaction: float = 0.0
    # V_sel, the selection of the units the statistic is over (module docstring); fixed, like V_points.
    var_selection: float = 0.0
    undefined: int = 0
    degenerate: bool = False
    # The scale the variances are on (a key of TO_SCALE): "identity", or "atanh" for a correlation (Fisher z).
    scale: str = "identity"

    @property
    def var_points(self) -> float:
        """V_points: the point effects, which more models do not shrink (0 when no points are resampled)."""
        if math.isnan(self.var_points_only):
            return 0.0
        return max(self.var_points_only - self.var_interaction, 0.0)

    @property
    def var_models(self) -> float:
        """V_models: the rest of the total variance (``var_both``, corrected as the module
        docstring says), which shrinks as models are added."""
        return max(self.var_both - self.var_points, 0.0)

    def predicted_half_width(self, model_factor: float, alpha: float = 0.05) -> float:
        """Half width (z times the standard deviation) with ``model_factor`` times the models per pool."""
        if not model_factor > 0:
            raise ValueError(f"model_factor must be > 0, got {model_factor}")
        return _normal_quantile(alpha) * math.sqrt(self.var_points + self.var_selection
                                                   + self.var_models / model_factor)


def with_selection(interval: CrossedInterval, variance: float, alpha: float = 0.05) -> CrossedInterval:
    """``interval`` widened by the selection variance V_sel on each side in quadrature (module docstring)."""
    _check_alpha(alpha)
    if not (math.isfinite(variance) and variance >= 0):
        raise ValueError(f"the selection variance must be a finite number >= 0, got {variance}")
    if variance == 0 or not (math.isfinite(interval.lower) and math.isfinite(interval.upper)):
        return interval
    extra = _normal_quantile(alpha) ** 2 * variance
    estimate = interval.estimate
    return replace(interval, lower=estimate - math.sqrt((estimate - interval.lower) ** 2 + extra),
                   upper=estimate + math.sqrt((interval.upper - estimate) ** 2 + extra),
                   method=f"{interval.method}; widened by the selection's variance {variance:.3g}",
                   var_selection=interval.var_selection + variance)


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


def zero_failure_bound(units: int, alpha: float = 0.05) -> float:
    """One-sided (1 - alpha) upper bound on a failure rate none of ``units`` independent units
    showed (module docstring): ``1 - alpha ** (1 / units)``."""
    _check_alpha(alpha)
    if units < 1:
        raise ValueError(f"a zero-failure bound needs at least one unit, got {units}")
    return 1.0 - alpha ** (1.0 / units)


def units_for_zero_failure_bound(bound: float, alpha: float = 0.05) -> int:
    """The fewest independent units whose zero-failure bound is below ``bound``."""
    _check_alpha(alpha)
    if not 0.0 < bound < 1.0:
        raise ValueError(f"bound must lie in (0, 1), got {bound}")
    return math.floor(math.log(alpha) / math.log1p(-bound)) + 1


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


def newcombe_paired_difference(first, second, alpha: float = 0.05) -> Interval:
    """``mean(first) - mean(second)`` for two boolean outcomes of the same items, with Newcombe's
    paired hybrid score interval (module docstring); the estimate always lies inside it."""
    _check_alpha(alpha)
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if first.shape != second.shape or first.ndim != 1 or first.size == 0:
        raise ValueError(f"first and second must be non-empty 1-D arrays of one length, got {first.shape} "
                         f"and {second.shape}")
    n = first.size
    both, first_only = int((first & second).sum()), int((first & ~second).sum())
    second_only, neither = int((~first & second).sum()), n - int((first | second).sum())
    margins = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    phi = (both * neither - first_only * second_only) / math.sqrt(margins) if margins else 0.0
    p1, p2 = first.mean(), second.mean()
    (l1, u1), (l2, u2) = wilson_interval(int(first.sum()), n, alpha), wilson_interval(int(second.sum()), n, alpha)
    lower = p1 - p2 - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = p1 - p2 + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return Interval(float(p1 - p2), max(-1.0, lower), min(1.0, upper), n, "newcombe paired hybrid score")


def cohen_kappa(first: np.ndarray, second: np.ndarray, categories: int) -> float:
    """Cohen's kappa of two labellings coded 0..categories-1: (p_o - p_e) / (1 - p_e), p_o the
    share of agreements, p_e the share expected from the two margins (sklearn's
    ``cohen_kappa_score`` gives the same, at 200 times the cost inside a bootstrap)."""
    confusion = np.bincount(first * categories + second, minlength=categories**2).reshape(categories, categories)
    confusion = confusion / confusion.sum()
    observed, expected = np.trace(confusion), confusion.sum(1) @ confusion.sum(0)
    return float((observed - expected) / (1 - expected)) if expected < 1 else math.nan


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


# --------------------------------------------------------------------------- crossed bootstrap


@dataclass(frozen=True, eq=False)
class Points:
    """Points resampled as whole clusters, within strata.

    ``clusters``: one id per point (a negative id makes the point its own cluster);
    ``strata``: one label per point (None: one stratum). A cluster with points in two strata
    is resampled as two units, one per stratum, so every stratum keeps its number of units.
    """

    clusters: np.ndarray
    strata: np.ndarray | None = None

    def __post_init__(self):
        clusters = np.asarray(self.clusters)
        if clusters.ndim != 1 or clusters.size == 0:
            raise ValueError(f"clusters must be a non-empty 1-D array, got shape {clusters.shape}")
        strata = np.zeros(clusters.size, dtype=np.int64) if self.strata is None else np.asarray(self.strata)
        if strata.shape != clusters.shape:
            raise ValueError(f"strata has shape {strata.shape}, clusters {clusters.shape}")
        stratum_of_point = np.unique(strata.astype(str), return_inverse=True)[1]
        ids = np.where(clusters < 0, -1, clusters).astype(np.int64)
        own = np.flatnonzero(ids < 0)
        ids[own] = ids.max(initial=-1) + 1 + np.arange(len(own))
        units, unit_of_point = np.unique(np.stack([stratum_of_point, ids]), axis=1, return_inverse=True)
        object.__setattr__(self, "unit_of_point", unit_of_point.ravel())
        object.__setattr__(self, "stratum_of_unit", units[0])
        object.__setattr__(self, "_draw", _WithinGroups(units[0]))

    @property
    def n(self) -> int:
        return len(self.unit_of_point)

    @property
    def n_clusters(self) -> int:
        return self._draw.n

    @property
    def strata_that_vary(self) -> dict[int, int]:
        """Each stratum of two or more units (a stratum of one resamples to itself): its units."""
        strata, units = np.unique(self.stratum_of_unit, return_counts=True)
        return {int(stratum): int(count) for stratum, count in zip(strata, units) if count >= 2}

    def resample(self, rng: np.random.Generator, stratum: int | None = None) -> np.ndarray:
        """Indices of the points of one resample (repeats allowed), in point order; with
        ``stratum``, only that stratum's units are resampled and every other point kept once."""
        counts = self._draw.counts(rng).astype(np.int64)
        if stratum is not None:
            counts[self.stratum_of_unit != stratum] = 1
        return np.repeat(np.arange(self.n), counts[self.unit_of_point])


@dataclass(frozen=True)
class SmallSample:
    """``units`` resampled with replacement within ``groups`` groups (each of two or more): the
    bootstrap's variance of a mean is (n_g - 1) / n_g of the unbiased one in each group, so a
    one-way variance is multiplied by ``factor`` = units / (units - groups) (exact for groups of
    equal size), and it has ``degrees`` = units - groups degrees of freedom (module docstring)."""

    units: int
    groups: int

    @property
    def degrees(self) -> int:
        return self.units - self.groups

    @property
    def factor(self) -> float:
        return self.units / self.degrees if self.degrees > 0 else 1.0


class _WithinGroups:
    """Draws ``n`` items with replacement within each group: a count per item, each group's
    counts summing to its size."""

    def __init__(self, groups: np.ndarray):
        groups = np.asarray(groups)
        self.n = len(groups)
        self._order = np.argsort(groups, kind="stable")
        sorted_groups = groups[self._order]
        _, start, size = np.unique(sorted_groups, return_index=True, return_counts=True)
        # Groups of one item resample to themselves and add no variance: only the others count.
        self.spread = SmallSample(int(size[size >= 2].sum()), int((size >= 2).sum()))
        group_index = np.searchsorted(np.unique(sorted_groups), sorted_groups)
        self._start, self._size = start[group_index], size[group_index]

    def counts(self, rng: np.random.Generator) -> np.ndarray:
        chosen = self._start + np.floor(rng.random(self.n) * self._size).astype(np.int64)
        counts = np.empty(self.n, dtype=np.float64)
        counts[self._order] = np.bincount(chosen, minlength=self.n)
        return counts


@dataclass(frozen=True)
class Replicate:
    """One resample of a models x points array: a weight (count) per model row of each pool,
    and the indices of each point set's resampled points. The original sample has every weight
    1 and every point once."""

    models: dict
    points: dict


def _replicates(model_pools: dict, point_sets: dict, n_boot: int, seed: int,
                resample_models: bool, resample_points: bool | tuple[str, int]):
    """``resample_points``: every point set, none, or one ``(set, stratum)``."""
    rng = np.random.default_rng(seed)
    draws = {name: _WithinGroups(groups) for name, groups in model_pools.items()}
    only = resample_points if isinstance(resample_points, tuple) else None

    def points_of(name, points):
        if only is not None:
            return points.resample(rng, only[1]) if name == only[0] else np.arange(points.n)
        return points.resample(rng) if resample_points else np.arange(points.n)

    for _ in range(n_boot):
        yield Replicate(
            {name: draw.counts(rng) if resample_models else np.ones(draw.n) for name, draw in draws.items()},
            {name: points_of(name, points) for name, points in point_sets.items()})


def _values(replicates: list[dict], name: str) -> np.ndarray:
    return np.array([figures[name] for figures in replicates], dtype=float)


def _finite_variance(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.var(finite)) if len(finite) >= 2 else math.nan


def _welch_satterthwaite(components: list[tuple[float, int]]) -> float:
    """Degrees of freedom of a sum of variances, each ``(variance, its degrees)``; a component
    without degrees (nothing to resample) adds no variance and is left out."""
    counted = [(v, d) for v, d in components if d > 0 and math.isfinite(v) and v > 0]
    denominator = sum(v * v / d for v, d in counted)
    return sum(v for v, _ in counted) ** 2 / denominator if denominator > 0 else math.inf


def crossed_bootstrap(statistic: Callable[[Replicate], dict], models: dict | None = None,
                      points: dict | None = None, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05, components: bool = True,
                      reselects: bool = False, around_estimate: bool = False,
                      bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, CrossedInterval]:
    """Crossed bootstrap intervals (module docstring) of the figures ``statistic`` returns.

    ``statistic(replicate)`` returns ``{name: value}`` (NaN where a figure does not exist in
    that resample). ``models`` maps a model pool's name to one group label per row (rows are
    resampled within their group); ``points`` maps a point set's name to its :class:`Points`.
    ``components`` adds the one-way runs that estimate the variance components (the models' with
    half as many resamples, the points' split over their strata); the power statement needs them.
    ``reselects``: the statistic re-selects points inside each replicate, so its interval is not
    scaled to the one-way variances. ``around_estimate`` (with ``reselects``): the interval is the
    estimate -/+ z times the crossed replicates' standard deviation, cut to ``bounds``, instead of
    their percentiles, for a ranking whose resamples regress toward the population (module docstring).
    """
    _check_alpha(alpha)
    if around_estimate and not reselects:
        raise ValueError("around_estimate is for statistics that re-select (reselects=True); the others' "
                         "intervals are scaled to the one-way variances")
    _check_n_boot(n_boot)
    models = {name: np.asarray(groups) for name, groups in (models or {}).items()}
    points = dict(points or {})
    if not models and not points:
        raise ValueError("crossed_bootstrap needs at least one model pool or point set to resample")
    for name, groups in models.items():
        if groups.ndim != 1 or groups.size < 2:
            raise ValueError(f"model pool {name!r} needs a 1-D array of at least 2 group labels, "
                             f"got shape {groups.shape}")
    original = Replicate({name: np.ones(len(groups)) for name, groups in models.items()},
                         {name: np.arange(p.n) for name, p in points.items()})
    estimates = {name: float(value) for name, value in statistic(original).items()}
    both = [statistic(r) for r in _replicates(models, points, n_boot, seed, True, True)]
    # One-way runs: the models, then each stratum of points on its own, so that each part's
    # variance gets its own small-sample factor and degrees (module docstring).
    strata = [((name, stratum), SmallSample(units, 1)) for name, p in points.items()
              for stratum, units in p.strata_that_vary.items()]
    runs = []
    if components and models:
        pools = [_WithinGroups(groups).spread for groups in models.values()]
        runs.append(("models", True, False, max(100, n_boot // 2),
                     SmallSample(sum(p.units for p in pools), sum(p.groups for p in pools))))
    if components:
        runs += [(key, False, key, max(100, n_boot // (2 * len(strata))), spread) for key, spread in strata]
    one_way = [(key, [statistic(r) for r in _replicates(models, points, count, seed + 1 + i, with_models, with_points)],
                spread) for i, (key, with_models, with_points, count, spread) in enumerate(runs)]
    n_points = sum(p.n for p in points.values())
    n_models = sum(len(groups) for groups in models.values())
    resampled = ([f"models within {sum(len(np.unique(g)) for g in models.values())} pools"] if models else []) + \
                ([f"points in {sum(p.n_clusters for p in points.values())} clusters"] if points else [])
    out = {}
    for name, estimate in estimates.items():
        replicates = _values(both, name)
        finite = replicates[np.isfinite(replicates)]
        undefined = len(replicates) - len(finite)
        method = f"crossed bootstrap percentile ({', '.join(resampled)}; {n_boot} resamples)"
        parts = {key: (_finite_variance(_values(values, name)), spread) for key, values, spread in one_way}
        variances, unbiased = {}, {}
        if components and models:
            raw, spread = parts["models"]
            variances["models"], unbiased["models"] = raw, spread.factor * raw
        if components and points:
            in_strata = [part for key, part in parts.items() if key != "models"]
            variances["points"] = sum(raw for raw, _ in in_strata)
            unbiased["points"] = sum(spread.factor * raw for raw, spread in in_strata)
        common = dict(n=n_points or n_models, models=n_models, undefined=undefined,
                      var_models_only=float(unbiased.get("models", math.nan)),
                      var_points_only=float(unbiased.get("points", 0.0 if not points else math.nan)))
        if not math.isfinite(estimate) or undefined > _MAX_DEGENERATE_SHARE * n_boot:
            out[name] = CrossedInterval(estimate, math.nan, math.nan,
                                        method=f"{method}; undefined in {undefined} resamples", var_both=math.nan,
                                        **common)
            continue
        lower, upper = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
        degenerate = bool(np.all(finite == estimate))
        variance = float(np.var(finite))
        interaction = 0.0
        one_way_sum = variances.get("models", math.nan) + variances.get("points", math.nan)
        if math.isfinite(one_way_sum):
            interaction = max(variance - one_way_sum, 0.0)
        if math.isfinite(one_way_sum) and variance > 0 and not reselects:
            # Both ways resampled: the interaction counted twice, not three times; each way's
            # variance unbiased for its few units, with a t quantile on their degrees (module docstring).
            corrected = sum(unbiased.values())
            target = min(variance, one_way_sum) * (corrected / one_way_sum if one_way_sum > 0 else 1.0)
            degrees = _welch_satterthwaite([(spread.factor * raw, spread.degrees) for raw, spread in parts.values()])
            widen = float(scipy_stats.t.ppf(1 - alpha / 2, degrees)) / _normal_quantile(alpha)
            scale = math.sqrt(target / variance) * widen
            lower, upper = estimate - scale * (estimate - lower), estimate + scale * (upper - estimate)
            variance = target
            method += f", scaled to the one-way variances' sum, t on {degrees:.0f} degrees of freedom"
        if around_estimate:
            half = _normal_quantile(alpha) * math.sqrt(variance)
            lower, upper = max(estimate - half, bounds[0]), min(estimate + half, bounds[1])
            method = method.replace("percentile", "normal (estimate -/+ z sd of the replicates)")
        out[name] = CrossedInterval(estimate, float(lower), float(upper), method=method,
                                    var_both=variance, var_interaction=interaction, degenerate=degenerate, **common)
    return out


def mean_over_fits(estimates, var_points: float, n: int, alpha: float = 0.05, fits: str = "fits",
                   bounds: tuple[float, float] = (-math.inf, math.inf)) -> CrossedInterval:
    """The mean of m independent fits' ``estimates`` with the points' variance ``var_points`` of
    that mean (module docstring), the interval cut to the statistic's ``bounds``; ``n`` counts the
    points. The fits play the models' part in the variance components, so the power statement
    asks for more fits or more points."""
    _check_alpha(alpha)
    values = _finite_1d("estimates", estimates)
    if values.size < 2:
        raise ValueError(f"mean_over_fits needs at least 2 fits' estimates, got {values.size}")
    if not (math.isfinite(var_points) and var_points >= 0):
        raise ValueError(f"var_points must be a finite number >= 0, got {var_points}")
    m = values.size
    between = float(np.var(values, ddof=1)) / m
    variance = var_points + between
    degrees = math.inf if between == 0 else variance**2 / (between**2 / (m - 1))
    half = float(scipy_stats.t.ppf(1 - alpha / 2, degrees)) * math.sqrt(variance)
    mean = float(values.mean())
    return CrossedInterval(mean, max(mean - half, bounds[0]), min(mean + half, bounds[1]), n,
                           f"mean over {m} {fits}: the points' bootstrap variance plus the {fits}' spread over {m}, "
                           f"t on {degrees:.1f} (Welch-Satterthwaite) degrees of freedom", models=m,
                           var_both=variance, var_models_only=between, var_points_only=var_points,
                           degenerate=variance == 0)


def power_statement(estimate: float, threshold: float, var_points: float, var_models: float,
                    models_per_arm: dict, power: float = 0.8, alpha: float = 0.05,
                    most: int = 10**6, points: str = "points", var_selection: float = 0.0) -> tuple[dict | None, str]:
    """Models for ``power`` at the observed distance to the threshold (module docstring), and the
    sentence a report prints; ``(None, why)`` when more models cannot decide it.

    ``models_per_arm`` names each arm's models now (e.g. ``{"subsampled models": 300}``); every
    arm is scaled by the same factor, and the answer names them the same way. ``points`` names
    the other level (e.g. "configurations"). The variances must be on the scale of ``estimate``.
    ``var_selection`` (``with_selection``) does not shrink with these models either: it adds to
    the points' part, and where it alone is too wide the answer asks for more scoring models.
    """
    if not 0 < power < 1:
        raise ValueError(f"power must lie strictly between 0 and 1, got {power}")
    if not models_per_arm or min(models_per_arm.values()) < 1:
        raise ValueError(f"models_per_arm must name at least one arm with >= 1 model, got {models_per_arm}")
    distance = abs(estimate - threshold)
    if not (math.isfinite(distance) and math.isfinite(var_points) and math.isfinite(var_models)):
        return None, "the interval is undefined, so no number of models can be projected"
    if distance == 0:
        return None, "the estimate sits on the threshold: no number of models or points decides it"
    allowed = (distance / (_normal_quantile(alpha) + float(scipy_stats.norm.ppf(power)))) ** 2
    if var_selection >= allowed:
        return None, (f"more scoring models, not more models per arm: the selection of the removed set alone "
                      f"(half width {_normal_quantile(alpha) * math.sqrt(var_selection):.3g}) is too wide for "
                      f"{power:.0%} power at the distance {distance:.3g} to the threshold")
    var_fixed = var_points + var_selection
    fixed_half = _normal_quantile(alpha) * math.sqrt(var_fixed)
    fixed = f"{points} and the removed set's selection" if var_selection else points
    more = f"{points} or scoring models" if var_selection else points
    if var_fixed >= allowed:
        return None, (f"more {more}, not more models: the spread over {fixed} alone (half width "
                      f"{fixed_half:.3g}) is too wide for {power:.0%} power at the distance {distance:.3g} "
                      f"to the threshold")
    if var_models == 0:
        return None, f"the models add no variance here; more {more}, not more models, would narrow it"
    factor = var_models / (allowed - var_fixed)
    needed = {arm: math.ceil(count * factor) for arm, count in models_per_arm.items()}
    if max(needed.values()) > most:
        return None, (f"over {most:,} models per arm would be needed for {power:.0%} power at the distance "
                      f"{distance:.3g}: more models cannot help in practice")
    arms = " and ".join(f"{count:,} {arm}" for arm, count in needed.items())
    now = " and ".join(f"{count:,}" for count in models_per_arm.values())
    # A zero V_points is the moment estimate clipped at 0 (the interaction as large as the points'
    # one-way variance), not a measured absence of point noise.
    caveat = (f"the half width from the {fixed}, {fixed_half:.3g}, does not shrink with models" if var_fixed > 0 else
              f"the {points}' own share of the variance estimates at 0 here, so the count is rough")
    return needed, (f"about {arms} (now {now}) would decide it with {power:.0%} power if the estimate stayed "
                    f"at {estimate:.3g} ({caveat})")


def normal_p_value(estimate: float, lower: float, upper: float, threshold: float, direction: str,
                   alpha: float = 0.05) -> float:
    """One-sided p-value of 'the claim does not hold', reading the interval's half on the
    threshold's side as normal: p < alpha / 2 exactly when that bound clears the threshold, so
    the p-value and the case's own verdict agree."""
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")
    if not all(math.isfinite(v) for v in (estimate, lower, upper)):
        return math.nan
    half = estimate - lower if direction == "above" else upper - estimate
    standard_error = half / _normal_quantile(alpha)
    signed = estimate - threshold if direction == "above" else threshold - estimate
    if standard_error <= 0:
        return 0.0 if signed > 0 else 1.0
    return float(scipy_stats.norm.sf(signed / standard_error))


def holm(p_values, alpha: float = 0.05) -> np.ndarray:
    """Which hypotheses Holm's step-down rule rejects (module docstring); NaN is never rejected."""
    _check_alpha(alpha)
    p = np.asarray(p_values, dtype=float)
    rejected = np.zeros(p.shape, dtype=bool)
    order = [i for i in np.argsort(p, kind="stable") if not np.isnan(p[i])]
    m = len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


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


def pearson_with_model_noise(x, y, model_variance_z: float, models: int, alpha: float = 0.05,
                             given=None) -> CrossedInterval:
    """Pearson r with the Fisher interval over the pairs widened by the models' variance, or the
    partial r given ``given`` with the interval over the pairs alone (module docstring)."""
    _check_alpha(alpha)
    x, y = _check_pair(x, y, minimum=4 if given is None else 5)
    if not (math.isfinite(model_variance_z) and model_variance_z >= 0):
        raise ValueError(f"model_variance_z must be a finite number >= 0, got {model_variance_z}")
    if given is not None:
        given, _ = _check_pair(given, y, minimum=5)
    r = float(row_correlation(x, y, given))
    n = x.size
    keep = ~np.eye(n, dtype=bool)
    left_out = np.arctanh(np.clip(row_correlation(*(np.stack([v[k] for k in keep]) if v is not None else None
                                                     for v in (x, y, given))), -1 + 1e-12, 1 - 1e-12))
    pairs_z = float((n - 1) / n * ((left_out - left_out.mean()) ** 2).sum())
    centre = math.atanh(min(max(r, -1 + 1e-12), 1 - 1e-12))
    if given is None:
        degrees, variance, pairs_only = n - 1, pairs_z + model_variance_z, pairs_z
        method = "pearson, Fisher z with the jackknife's variance over pairs and the models' variance"
    else:
        # The jackknife holds the models' noise once (module docstring); it is split out for power only.
        degrees, variance, pairs_only = n - 2, pairs_z, max(pairs_z - model_variance_z, 0.0)
        method = "partial pearson, Fisher z with the jackknife's variance over pairs (the models' noise within it)"
    half = float(scipy_stats.t.ppf(1 - alpha / 2, degrees)) * math.sqrt(variance)
    return CrossedInterval(r, math.tanh(centre - half), math.tanh(centre + half), n,
                           f"{method}, t quantile on {degrees} degrees of freedom", models=models,
                           var_both=variance, var_models_only=model_variance_z, var_points_only=pairs_only,
                           scale="atanh")


def row_correlation(x: np.ndarray, y: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
    """Pearson r of every row of ``x`` with the same row of ``y``; the partial r given the same
    row of ``given`` when set (module docstring)."""
    if given is None:
        return _row_pearson(x, y)
    r_xy, r_xg, r_yg = _row_pearson(x, y), _row_pearson(x, given), _row_pearson(y, given)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip((r_xy - r_xg * r_yg) / np.sqrt((1 - r_xg**2) * (1 - r_yg**2)), -1.0, 1.0)


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


def _threshold_at_tpr(scores: np.ndarray, positive: np.ndarray, target_tpr: float) -> float:
    """The largest threshold whose TPR (``score >= threshold``) reaches ``target_tpr``."""
    if not 0 < target_tpr <= 1:
        raise ValueError(f"target_tpr must lie in (0, 1], got {target_tpr}")
    positive_scores = np.sort(scores[positive])[::-1]
    n_positive = positive_scores.size
    if n_positive == 0:
        raise ValueError("is_positive has no positive points, so TPR is undefined")
    # Flagging the k highest-scoring positives gives TPR k / n_positive; take the smallest
    # k reaching the target, compared exactly as rates_at_threshold computes TPR.
    flagged_counts = np.arange(1, n_positive + 1)
    needed = int(flagged_counts[np.argmax(flagged_counts / n_positive >= target_tpr)])
    return float(positive_scores[needed - 1])


def fpr_at_tpr(scores, is_positive, target_tpr: float = 0.95, alpha: float = 0.05) -> OperatingPoint:
    """FPR at the largest threshold whose TPR reaches ``target_tpr`` (Wilson intervals)."""
    _check_alpha(alpha)
    scores, positive = _check_detection_inputs(scores, is_positive)
    threshold = _threshold_at_tpr(scores, positive, target_tpr)
    rates = rates_at_threshold(scores, positive, threshold, alpha)
    return OperatingPoint(threshold, rates["tpr"], rates["fpr"])


def fpr_at_tpr_estimate(scores, is_positive, target_tpr: float = 0.95) -> float:
    """``fpr_at_tpr(...).fpr.estimate`` without the Wilson intervals, for a bootstrap that recomputes
    the rate in every replicate and discards them (NaN without negatives, as there)."""
    scores, positive = _check_detection_inputs(scores, is_positive)
    threshold = _threshold_at_tpr(scores, positive, target_tpr)
    negative_scores = scores[~positive]
    return float((negative_scores >= threshold).sum() / negative_scores.size) if negative_scores.size else math.nan
