"""Unit tests of harness.stats: published and hand-computed values, coverage, properties, bad input."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from harness.stats import (
    CrossedInterval,
    Interval,
    OperatingPoint,
    Points,
    bootstrap_correlation,
    bootstrap_difference,
    bootstrap_mean,
    crossed_bootstrap,
    fpr_at_tpr,
    fpr_at_tpr_estimate,
    holm,
    mean_over_fits,
    newcombe_difference,
    newcombe_paired_difference,
    cohen_kappa,
    normal_p_value,
    pearson,
    pearson_with_model_noise,
    power_statement,
    rates_at_threshold,
    spearman,
    units_for_zero_failure_bound,
    wilson_interval,
    with_selection,
    zero_failure_bound,
)
from harness.verdict import INCONCLUSIVE, Statistic, Threshold, decide

Z_975 = 1.959963984540054  # Phi^-1(0.975)
Z_80 = 0.8416212335729143  # Phi^-1(0.8)


def wilson_by_hand(successes: int, trials: int, z: float = Z_975) -> tuple[float, float]:
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


# --------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize("successes, expected", [
    # Textbook values (Newcombe 1998, "Two-sided confidence intervals for the single proportion").
    (0, (0.0, 0.2775)),
    (5, (0.2366, 0.7634)),
    (10, (0.7225, 1.0)),
])
def test_wilson_matches_textbook_values_for_ten_trials(successes, expected):
    lower, upper = wilson_interval(successes, 10)
    assert (lower, upper) == pytest.approx(expected, abs=5e-5)
    assert (lower, upper) == pytest.approx(wilson_by_hand(successes, 10), abs=1e-12)


def test_wilson_with_no_trials_is_the_whole_unit_interval():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_broadcasts_arrays_like_scalars():
    successes = np.array([[0, 3, 7], [1, 2, 0]])
    trials = np.array([10, 7, 7])
    lower, upper = wilson_interval(successes, trials, alpha=0.1)
    assert lower.shape == upper.shape == (2, 3)
    for index in np.ndindex(successes.shape):
        expected = wilson_interval(int(successes[index]), int(trials[index[1]]), alpha=0.1)
        assert (lower[index], upper[index]) == pytest.approx(expected)


def test_wilson_coverage_near_nominal_by_simulation():
    rng = np.random.default_rng(12345)
    p, trials = 0.3, 50
    lower, upper = wilson_interval(rng.binomial(trials, p, size=2000), trials)
    coverage = np.mean((lower <= p) & (p <= upper))
    assert 0.93 <= coverage <= 0.97


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.floats(0.001, 0.5))
def test_wilson_brackets_the_observed_share(counts, alpha):
    successes, trials = counts
    lower, upper = wilson_interval(successes, trials, alpha)
    assert 0.0 <= lower <= successes / trials <= upper <= 1.0


# --------------------------------------------------------------------------- Newcombe


@pytest.mark.parametrize("s1, n1, s2, n2, lower, upper", [
    # Newcombe (1998), Stat Med 17:873-890, Table II, method 10.
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0),
    (10, 10, 0, 10, 0.6075, 1.0),
])
def test_newcombe_matches_published_table(s1, n1, s2, n2, lower, upper):
    estimate, got_lower, got_upper = newcombe_difference(s1, n1, s2, n2)
    assert estimate == pytest.approx(s1 / n1 - s2 / n2)
    assert (got_lower, got_upper) == pytest.approx((lower, upper), abs=5e-5)


def test_newcombe_broadcasts_and_marks_empty_arms():
    estimate, lower, upper = newcombe_difference([56, 0, 3], [70, 0, 5], [48, 48, 0], [80, 80, 0])
    assert estimate[0] == pytest.approx(0.2)
    assert np.isnan(estimate[1:]).all()
    assert lower[1:].tolist() == [-1.0, -1.0] and upper[1:].tolist() == [1.0, 1.0]


def test_newcombe_coverage_near_nominal_by_simulation():
    rng = np.random.default_rng(7)
    p1, n1, p2, n2 = 0.3, 40, 0.5, 60
    _, lower, upper = newcombe_difference(rng.binomial(n1, p1, 2000), n1, rng.binomial(n2, p2, 2000), n2)
    coverage = np.mean((lower <= p1 - p2) & (p1 - p2 <= upper))
    assert 0.93 <= coverage <= 0.97


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_newcombe_brackets_the_observed_difference(arm1, arm2):
    estimate, lower, upper = newcombe_difference(*arm1, *arm2)
    assert -1.0 <= lower <= estimate <= upper <= 1.0


# --------------------------------------------------------------------------- Interval


def test_interval_helpers():
    interval = Interval(0.5, 0.25, 1.0, 12, "wilson")
    assert interval.width == 0.75
    assert interval.contains(0.25) and interval.contains(1.0) and not interval.contains(0.2)
    assert interval.as_dict() == {"estimate": 0.5, "lower": 0.25, "upper": 1.0, "n": 12, "method": "wilson"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        interval.lower = 0.0


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_mean_agrees_with_normal_theory_on_normal_data():
    x = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    interval = bootstrap_mean(x, n_boot=4000)
    standard_error = x.std(ddof=1) / math.sqrt(x.size)
    assert interval.estimate == pytest.approx(x.mean())
    assert interval.lower == pytest.approx(x.mean() - Z_975 * standard_error, abs=0.25 * standard_error)
    assert interval.upper == pytest.approx(x.mean() + Z_975 * standard_error, abs=0.25 * standard_error)
    assert interval.n == 400


def test_bootstrap_is_reproducible_for_a_seed():
    x = np.arange(30.0) ** 1.5
    assert bootstrap_mean(x, seed=4) == bootstrap_mean(x, seed=4)
    assert bootstrap_mean(x, seed=4) != bootstrap_mean(x, seed=5)


def test_paired_bootstrap_is_narrower_when_the_pairs_share_noise():
    rng = np.random.default_rng(11)
    shared = rng.normal(0.0, 5.0, size=60)
    a = shared + 1.0 + rng.normal(0.0, 0.5, size=60)
    b = shared + rng.normal(0.0, 0.5, size=60)
    paired = bootstrap_difference(a, b, paired=True)
    unpaired = bootstrap_difference(a, b)
    assert paired.estimate == unpaired.estimate == pytest.approx(a.mean() - b.mean())
    assert paired.contains(1.0) and paired.lower > 0
    assert paired.width < unpaired.width / 3
    assert (paired.n, unpaired.n) == (60, 120)


def test_bootstrap_reports_how_many_nans():
    with pytest.raises(ValueError, match="2 NaN"):
        bootstrap_mean([1.0, np.nan, 3.0, np.nan])
    with pytest.raises(ValueError, match="1 NaN"):
        bootstrap_difference([1.0, 2.0, 3.0], [1.0, np.nan, 3.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=40), st.integers(0, 2**32 - 1))
def test_bootstrap_mean_interval_contains_the_sample_mean(values, seed):
    interval = bootstrap_mean(values, n_boot=200, seed=seed)
    tolerance = 1e-9 * (1 + max(abs(v) for v in values))
    assert interval.lower - tolerance <= np.mean(values) <= interval.upper + tolerance


# --------------------------------------------------------------------------- correlation


def test_pearson_matches_scipy_fisher_interval():
    rng = np.random.default_rng(5)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    interval = pearson(x, y, alpha=0.1)
    reference = scipy_stats.pearsonr(x, y)
    expected = reference.confidence_interval(confidence_level=0.9)
    assert interval.estimate == pytest.approx(reference.statistic)
    assert (interval.lower, interval.upper) == pytest.approx((expected.low, expected.high))


def test_spearman_uses_the_bonett_wright_standard_error():
    rng = np.random.default_rng(6)
    x = rng.normal(size=30)
    y = np.exp(x) + rng.normal(scale=0.5, size=30)
    interval = spearman(x, y)
    r = scipy_stats.spearmanr(x, y).statistic
    half = Z_975 * math.sqrt((1 + r * r / 2) / 27)
    assert interval.estimate == pytest.approx(r)
    assert (interval.lower, interval.upper) == pytest.approx((math.tanh(math.atanh(r) - half),
                                                               math.tanh(math.atanh(r) + half)))


def test_perfectly_correlated_data_give_one():
    x = np.linspace(0.1, 3.0, 20)
    assert pearson(x, 2 * x + 1).estimate == pytest.approx(1.0)
    assert pearson(x, 2 * x + 1).lower == pytest.approx(1.0)
    assert spearman(x, np.exp(x)).estimate == 1.0  # monotone but not linear
    assert spearman(x, -np.exp(x)).upper == -1.0


@pytest.mark.parametrize("correlation", [pearson, spearman,
                                         lambda x, y: bootstrap_correlation(x, y, n_boot=500),
                                         lambda x, y: bootstrap_correlation(x, y, "spearman", n_boot=500)])
def test_independent_data_give_an_interval_around_zero(correlation):
    rng = np.random.default_rng(8)
    interval = correlation(rng.normal(size=200), rng.normal(size=200))
    assert interval.contains(0.0)
    assert interval.width < 0.35


def test_bootstrap_correlation_skips_and_counts_degenerate_resamples():
    # 3 ones among 30: about (27/30)^30 = 4 % of resamples hold no 1 and have a constant x.
    x = np.r_[np.zeros(27), np.ones(3)]
    y = np.arange(30.0)
    interval = bootstrap_correlation(x, y)
    skipped = int(re.search(r"(\d+) degenerate skipped", interval.method).group(1))
    assert 0.02 * 2000 < skipped < 0.07 * 2000
    assert interval.contains(interval.estimate)


def test_bootstrap_correlation_refuses_too_many_degenerate_resamples():
    with pytest.raises(ValueError, match="constant x or y"):
        bootstrap_correlation([0, 0, 0, 0, 1], [1, 2, 3, 4, 5])


# --------------------------------------------------------------------------- detection rates

HAND_SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
HAND_POSITIVE = [1, 1, 0, 1, 0, 0, 1, 0]


def test_rates_at_threshold_on_a_hand_made_example():
    # score >= 0.6 flags 0.9, 0.8, 0.7, 0.6: 3 true positives (of 4) and 1 false positive (of 4).
    rates = rates_at_threshold(HAND_SCORES, HAND_POSITIVE, threshold=0.6)
    expected = {"tpr": (3, 4), "fpr": (1, 4), "precision": (3, 4), "false_discovery_rate": (1, 4)}
    assert set(rates) == set(expected)
    for name, (successes, trials) in expected.items():
        assert rates[name].estimate == successes / trials
        assert rates[name].n == trials
        assert (rates[name].lower, rates[name].upper) == pytest.approx(wilson_interval(successes, trials))


def test_rates_with_nothing_flagged_have_undefined_precision():
    rates = rates_at_threshold(HAND_SCORES, HAND_POSITIVE, threshold=5.0)
    assert rates["tpr"].estimate == 0.0
    assert math.isnan(rates["precision"].estimate)
    assert (rates["precision"].lower, rates["precision"].upper, rates["precision"].n) == (0.0, 1.0, 0)


@pytest.mark.parametrize("target, threshold, fpr", [
    (0.75, 0.6, 0.25),  # the third positive (0.6) flags one negative (0.7)
    (0.5, 0.8, 0.0),
    (1.0, 0.3, 0.75),   # the last positive (0.3) flags 0.7, 0.5, 0.4
])
def test_fpr_at_tpr_on_a_hand_made_example(target, threshold, fpr):
    point = fpr_at_tpr(HAND_SCORES, HAND_POSITIVE, target_tpr=target)
    assert isinstance(point, OperatingPoint)
    assert point.threshold == threshold
    assert point.tpr.estimate >= target
    assert point.fpr.estimate == fpr and point.fpr.n == 4


# (score, is positive) rows with at least one positive, scores on a coarse grid so that ties occur.
SCORED_ROWS = (st.lists(st.tuples(st.integers(0, 20).map(float), st.booleans()), min_size=1, max_size=60)
               .filter(lambda rows: any(positive for _, positive in rows)))


@settings(max_examples=100, deadline=None)
@given(SCORED_ROWS, st.floats(0.01, 1.0))
def test_fpr_at_tpr_picks_the_largest_threshold_reaching_the_target(rows, target):
    scores = np.array([score for score, _ in rows])
    positive = np.array([flag for _, flag in rows])
    point = fpr_at_tpr(scores, positive, target_tpr=target)
    assert point.tpr.estimate >= target
    higher = scores[scores > point.threshold]
    if higher.size:
        next_threshold = higher.min()
        assert rates_at_threshold(scores, positive, next_threshold)["tpr"].estimate < target


@settings(max_examples=100, deadline=None)
@given(SCORED_ROWS, st.floats(0.01, 1.0))
def test_fpr_at_tpr_estimate_is_fpr_at_tpr_without_its_intervals(rows, target):
    """The bootstraps' fast path (no Wilson intervals) reads the same operating point, ties included."""
    scores = np.array([score for score, _ in rows])
    positive = np.array([flag for _, flag in rows])
    full = fpr_at_tpr(scores, positive, target_tpr=target).fpr.estimate
    fast = fpr_at_tpr_estimate(scores, positive, target_tpr=target)
    assert fast == full or (math.isnan(fast) and math.isnan(full))


# --------------------------------------------------------------------------- crossed bootstrap


def _crossed_mean(correct: np.ndarray, clusters: np.ndarray, n_boot: int = 1000, seed: int = 0):
    """Mean accuracy over a models x points array, models and clustered points resampled."""
    def mean(replicate):
        weights, points = replicate.models["m"], replicate.points["p"]
        return {"mean": (weights @ correct[:, points]).sum() / (weights.sum() * len(points))}

    return crossed_bootstrap(mean, {"m": np.zeros(len(correct))}, {"p": Points(clusters)}, n_boot, seed)["mean"]


def test_points_resample_whole_clusters_within_their_strata():
    points = Points(np.array([0, 0, 1, 1, -1, -1, 2]), strata=np.array([0, 1, 0, 0, 1, 1, 1]))
    assert points.n_clusters == 6   # cluster 0 spans two strata: one unit in each
    unit_sizes = np.bincount(points.unit_of_point)
    rng = np.random.default_rng(0)
    for _ in range(20):
        drawn = points.resample(rng)
        counts = np.bincount(drawn, minlength=7)
        assert counts[2] == counts[3]                           # cluster 1 travels whole
        units_drawn = np.bincount(points.unit_of_point[drawn], minlength=6) / unit_sizes
        assert units_drawn[:2].sum() == 2 and units_drawn[2:].sum() == 4   # each stratum keeps its units


def test_crossed_bootstrap_holds_both_the_models_and_the_points_noise():
    rng = np.random.default_rng(1)
    point_effect = rng.normal(0, 1.0, 300)
    model_effect = rng.normal(0, 1.0, 40)
    probability = 1 / (1 + np.exp(-(1.5 + point_effect[None, :] + model_effect[:, None])))
    correct = (rng.random((40, 300)) < probability).astype(float)
    interval = _crossed_mean(correct, np.arange(300) // 3)
    assert interval.var_points_only > 0 and interval.var_models_only > 0
    # The total holds at least each one-way part: neither source is left out.
    assert interval.var_both >= 0.9 * max(interval.var_points_only, interval.var_models_only)
    assert interval.lower < interval.estimate < interval.upper and not interval.degenerate
    assert interval.n == 300 and interval.models == 40


def test_a_mean_over_ten_clusters_is_as_wide_as_a_t_interval():
    # Ten clusters (as ten LOO targets in a size bin), the points' noise only. The bootstrap's
    # variance of the mean is 9/10 of s^2/n, and z stands in for t on 9 degrees of freedom: the
    # plain percentile interval is 0.93 of the t interval's width and covers about 0.90 here.
    rng = np.random.default_rng(3)
    covered, width_over_z = [], []
    for draw in range(200):
        values = rng.normal(0.0, 1.0, 10)

        def mean(replicate):
            return {"mean": float(values[replicate.points["p"]].mean())}

        interval = crossed_bootstrap(mean, {"m": np.zeros(2)}, {"p": Points(np.arange(10))}, seed=draw)["mean"]
        covered.append(interval.lower <= 0.0 <= interval.upper)
        width_over_z.append((interval.upper - interval.lower) / (2 * 1.96 * values.std(ddof=1) / math.sqrt(10)))
    assert np.median(width_over_z) == pytest.approx(scipy_stats.t.ppf(0.975, 9) / 1.96, rel=0.05)
    assert np.mean(covered) >= 0.925
    assert "t on 9 degrees of freedom" in interval.method


def test_a_contrast_of_five_clusters_with_a_hundred_is_as_wide_as_welchs_t_interval():
    # Each stratum's variance and degrees count on their own: the five clusters' side dominates
    # with 4 degrees of freedom, which pooling the strata's 103 degrees would hide.
    rng = np.random.default_rng(1)
    strata = np.r_[np.zeros(5), np.ones(100)]
    over_welch = []
    for draw in range(100):
        few, many = rng.normal(0, 1, 5), rng.normal(0, 1, 100)
        values = np.r_[few, many]

        def contrast(replicate):
            drawn = replicate.points["p"]
            return {"d": float(values[drawn][strata[drawn] == 0].mean() - values[drawn][strata[drawn] == 1].mean())}

        interval = crossed_bootstrap(contrast, {"m": np.zeros(2)}, {"p": Points(np.arange(105), strata)},
                                     seed=draw)["d"]
        v_few, v_many = few.var(ddof=1) / 5, many.var(ddof=1) / 100
        degrees = (v_few + v_many) ** 2 / (v_few**2 / 4 + v_many**2 / 99)
        welch = scipy_stats.t.ppf(0.975, degrees) * math.sqrt(v_few + v_many)
        over_welch.append((interval.upper - interval.lower) / (2 * welch))
    assert np.median(over_welch) == pytest.approx(1.0, rel=0.1)


def test_a_statistic_that_reselects_keeps_the_unscaled_percentile_interval():
    rng = np.random.default_rng(2)
    scores = rng.normal(0, 1, (30, 200)) + rng.normal(0, 0.5, 200)[None, :]

    def share_over_cut(replicate):
        weights = replicate.models["m"]
        mean_score = (weights[:, None] * scores).sum(0) / weights.sum()
        return {"share": float(np.mean(mean_score[replicate.points["p"]] > 0.3))}

    arguments = (share_over_cut, {"m": np.zeros(30)}, {"p": Points(np.arange(200))})
    scaled = crossed_bootstrap(*arguments, n_boot=400)["share"]
    unscaled = crossed_bootstrap(*arguments, n_boot=400, reselects=True)["share"]
    assert "scaled" in scaled.method and "scaled" not in unscaled.method
    assert unscaled.upper - unscaled.lower >= scaled.upper - scaled.lower
    assert unscaled.var_interaction == pytest.approx(scaled.var_interaction)   # the power split is the same


def test_all_counts_at_their_maximum_leave_nothing_to_resample():
    interval = _crossed_mean(np.ones((16, 10)), np.arange(10))
    assert interval.degenerate and interval.lower == interval.upper == interval.estimate == 1.0
    statistic = Statistic.from_interval("score", interval, models_per_arm={"models": 16})
    assert math.isnan(statistic.lower) and "nothing to resample" in statistic.note
    assert decide(statistic, Threshold(0.5, "above", "test")) == INCONCLUSIVE


def test_a_zero_width_interval_from_counts_that_vary_decides_nothing():
    # A statistic that moves only when model 0 is drawn 4 or more times of 10 (about 1.3 % of the
    # resamples): they do not all equal the estimate, but the percentile interval is [0, 0], and a
    # refutation on it would rest on too little to resample.
    def rare_jump(replicate):
        return {"x": float(replicate.models["m"][0] >= 4)}

    interval = crossed_bootstrap(rare_jump, {"m": np.zeros(10)}, n_boot=1000)["x"]
    assert not interval.degenerate and interval.lower == interval.upper == 0.0
    statistic = Statistic.from_interval("share", interval)
    assert math.isnan(statistic.lower) and "too little to resample" in statistic.note
    assert decide(statistic, Threshold(0.0, "above", "test")) == INCONCLUSIVE


def test_a_statistic_undefined_in_many_resamples_has_no_interval():
    def rare(replicate):
        return {"x": 1.0 if replicate.models["m"][0] > 0 else np.nan}   # model 0 is left out ~37 % of the time

    interval = crossed_bootstrap(rare, {"m": np.zeros(10)}, n_boot=200)["x"]
    assert math.isnan(interval.lower) and interval.undefined > 20


def test_models_are_resampled_within_their_pools():
    groups = np.array([0, 0, 0, 1, 1, 2])

    def counts(replicate):
        weights = replicate.models["m"]
        return {f"pool {g}": weights[groups == g].sum() for g in (0, 1, 2)}

    intervals = crossed_bootstrap(counts, {"m": groups}, n_boot=200)
    for g, size in ((0, 3), (1, 2), (2, 1)):
        assert intervals[f"pool {g}"].lower == intervals[f"pool {g}"].upper == size


def test_power_statement_projects_models_or_says_more_points():
    # (0.1 / 2.80)^2 = 1.2755e-3 allowed; (1.2755e-3 - 1e-4) -> factor 0.01 / 1.1755e-3 = 8.51.
    needed, sentence = power_statement(0.1, 0.0, 1e-4, 0.01, {"models per arm": 30})
    assert needed == {"models per arm": 256} and "256 models per arm (now 30)" in sentence
    assert "the half width from the points, 0.0196, does not shrink" in sentence
    needed, sentence = power_statement(0.1, 0.0, 0.0, 0.01, {"models per arm": 30})
    assert needed == {"models per arm": 236} and "estimates at 0 here, so the count is rough" in sentence
    needed, sentence = power_statement(0.1, 0.0, 2e-3, 0.01, {"models per arm": 30})
    assert needed is None and sentence.startswith("more points, not more models")
    needed, sentence = power_statement(0.001, 0.0, 1e-9, 0.01, {"models per arm": 30})
    assert needed is None and "more models cannot help" in sentence
    assert power_statement(0.0, 0.0, 1e-4, 1e-4, {"m": 3})[0] is None
    with pytest.raises(ValueError, match="models_per_arm"):
        power_statement(0.1, 0.0, 1e-4, 0.01, {})


def test_predicted_half_width_follows_the_variance_decomposition():
    interval = CrossedInterval(0.0, -1.0, 1.0, 10, "test", models=10, var_both=0.05, var_models_only=0.03,
                               var_points_only=0.014, var_interaction=0.004)
    assert interval.var_points == pytest.approx(0.01) and interval.var_models == pytest.approx(0.04)
    assert interval.predicted_half_width(1.0) == pytest.approx(Z_975 * math.sqrt(0.05))
    assert interval.predicted_half_width(4.0) == pytest.approx(Z_975 * math.sqrt(0.01 + 0.01))


def test_a_selections_variance_widens_each_side_in_quadrature_and_stays_out_of_the_models_part():
    interval = CrossedInterval(0.5, 0.2, 0.6, 10, "test", models=10, var_both=0.01, var_models_only=0.008,
                               var_points_only=0.002)
    widened = with_selection(interval, 0.001)
    extra = Z_975**2 * 0.001
    assert widened.lower == pytest.approx(0.5 - math.sqrt(0.3**2 + extra))
    assert widened.upper == pytest.approx(0.5 + math.sqrt(0.1**2 + extra))
    assert widened.var_selection == 0.001 and "selection" in widened.method
    # Four times the models shrink the models' part only.
    assert widened.predicted_half_width(4.0) == pytest.approx(Z_975 * math.sqrt(0.002 + 0.001 + 0.008 / 4))
    assert with_selection(interval, 0.0) is interval
    with pytest.raises(ValueError, match="selection variance"):
        with_selection(interval, -1e-3)


def test_power_statement_asks_for_scoring_models_when_the_selection_alone_is_too_wide():
    # (0.1 / (1.960 + 0.842))^2 = 1.2741e-3 allowed.
    needed, sentence = power_statement(0.1, 0.0, 1e-4, 0.01, {"models per arm": 30}, var_selection=2e-3)
    assert needed is None and sentence.startswith("more scoring models, not more models per arm")
    needed, sentence = power_statement(0.1, 0.0, 1e-3, 0.01, {"models per arm": 30}, var_selection=5e-4)
    assert needed is None and sentence.startswith("more points or scoring models, not more models: the spread "
                                                  "over points and the removed set's selection alone")
    needed, _ = power_statement(0.1, 0.0, 1e-4, 0.01, {"models per arm": 30}, var_selection=5e-4)
    # It joins the points' part: 30 * 0.01 / (1.2741e-3 - 1e-4 - 5e-4) = 445.06 -> 446.
    allowed = (0.1 / (Z_975 + scipy_stats.norm.ppf(0.8))) ** 2
    assert needed == {"models per arm": math.ceil(30 * 0.01 / (allowed - 6e-4))} == {"models per arm": 446}


def test_holm_rejects_step_down_and_stops_at_the_first_failure():
    assert holm([0.01, 0.04, 0.03, 0.5]).tolist() == [True, False, False, False]   # 0.03 > 0.05 / 3
    assert holm([0.001, 0.01, 0.02]).tolist() == [True, True, True]                # 0.02 <= 0.05 / 1
    assert holm([np.nan, 0.001]).tolist() == [False, True]


def test_normal_p_value_reads_the_interval_as_normal():
    assert normal_p_value(0.0, -1.96, 1.96, 0.0, "above") == pytest.approx(0.5)
    assert normal_p_value(1.0, 0.5, 3.0, 0.0, "above") == pytest.approx(scipy_stats.norm.sf(Z_975 * 2))
    assert normal_p_value(1.96, 0.0, 3.92, 0.0, "above") == pytest.approx(0.025, abs=1e-4)
    assert normal_p_value(1.96, 0.0, 3.92, 0.0, "below") == pytest.approx(0.975, abs=1e-4)
    assert math.isnan(normal_p_value(math.nan, 0, 1, 0, "above"))


def test_pearson_with_model_noise_uses_the_jackknife_over_pairs_and_adds_the_models():
    x, y = np.arange(8.0), np.array([0.1, 0.3, 0.2, 0.5, 0.4, 0.8, 0.7, 0.9])
    left_out = np.array([np.arctanh(np.corrcoef(np.delete(x, i), np.delete(y, i))[0, 1]) for i in range(8)])
    jackknife = 7 / 8 * ((left_out - left_out.mean()) ** 2).sum()
    alone = pearson_with_model_noise(x, y, 0.0, models=80)
    assert alone.estimate == pytest.approx(pearson(x, y).estimate)
    assert alone.var_points_only == pytest.approx(jackknife) and alone.scale == "atanh"
    half = scipy_stats.t.ppf(0.975, 7) * math.sqrt(jackknife)
    assert alone.lower == pytest.approx(np.tanh(np.arctanh(alone.estimate) - half))
    wider = pearson_with_model_noise(x, y, 0.05, models=80)
    assert wider.lower < alone.lower and wider.upper > alone.upper and wider.var_models == pytest.approx(0.05)


def test_cohen_kappa_is_sklearns():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(2)
    first = rng.integers(0, 3, 500)
    second = np.where(rng.random(500) < 0.6, first, rng.integers(0, 3, 500))
    assert cohen_kappa(first, second, 3) == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)
    assert cohen_kappa(first, first, 3) == 1.0


def test_the_paired_newcombe_interval_is_the_unpaired_one_when_the_outcomes_are_uncorrelated():
    # A = B = C = D = 10: phi = 0, and the paired interval must reduce to the unpaired hybrid score one.
    first = np.array([True] * 20 + [False] * 20)
    second = np.array([True] * 10 + [False] * 10 + [True] * 10 + [False] * 10)
    paired = newcombe_paired_difference(first, second)
    assert (paired.estimate, paired.lower, paired.upper) == pytest.approx(newcombe_difference(20, 40, 20, 40))


def test_the_paired_newcombe_interval_narrows_with_agreement_and_holds_its_estimate():
    rng = np.random.default_rng(5)
    first = rng.random(300) < 0.3
    second = first.copy()
    second[:12] = ~second[:12]
    paired = newcombe_paired_difference(first, second)
    _, lower, upper = newcombe_difference(first.sum(), 300, second.sum(), 300)
    assert paired.lower <= paired.estimate <= paired.upper
    assert paired.upper - paired.lower < (upper - lower) / 2
    identical = newcombe_paired_difference(first, first)
    assert identical.estimate == 0 and -0.01 < identical.lower <= 0 <= identical.upper < 0.01  # Wilson's asymmetry
    with pytest.raises(ValueError, match="one length"):
        newcombe_paired_difference(first, second[:10])


def test_a_partial_correlation_given_the_common_cause_is_near_zero_and_matches_regression_residuals():
    rng = np.random.default_rng(3)
    cause = rng.normal(size=30)
    x, y = cause + 0.3 * rng.normal(size=30), -cause + 0.3 * rng.normal(size=30)
    raw = pearson_with_model_noise(x, y, 0.0, models=30)
    partial = pearson_with_model_noise(x, y, 0.0, models=30, given=cause)
    assert raw.upper < -0.8 and partial.lower < 0 < partial.upper
    residual = [v - np.polyval(np.polyfit(cause, v, 1), cause) for v in (x, y)]
    assert partial.estimate == pytest.approx(np.corrcoef(*residual)[0, 1])
    assert "28 degrees of freedom" in partial.method  # n - 2: one spent on the variable held fixed


def test_a_partial_correlations_interval_holds_the_models_noise_once_and_splits_it_out_for_power():
    rng = np.random.default_rng(4)
    cause = rng.normal(size=12)
    x, y = cause + 0.5 * rng.normal(size=12), -cause + 0.5 * rng.normal(size=12)
    alone = pearson_with_model_noise(x, y, 0.0, models=40, given=cause)
    with_models = pearson_with_model_noise(x, y, 0.01, models=40, given=cause)
    assert (with_models.lower, with_models.upper) == (alone.lower, alone.upper)
    assert with_models.var_both == pytest.approx(alone.var_both)
    assert with_models.var_models == pytest.approx(0.01)
    assert with_models.var_points == pytest.approx(alone.var_both - 0.01)
    swamped = pearson_with_model_noise(x, y, 10.0, models=40, given=cause)
    assert swamped.var_points == 0 and swamped.var_models == pytest.approx(alone.var_both)


# --------------------------------------------------------------------------- bad input

BAD_CALLS = {
    "wilson: successes above trials": lambda: wilson_interval(11, 10),
    "wilson: negative successes": lambda: wilson_interval(-1, 10),
    "wilson: negative trials in array": lambda: wilson_interval([0, 0], [5, -1]),
    "wilson: alpha zero": lambda: wilson_interval(1, 10, alpha=0.0),
    "wilson: alpha one": lambda: wilson_interval(1, 10, alpha=1.0),
    "wilson: NaN": lambda: wilson_interval(np.nan, 10),
    "newcombe: successes above trials": lambda: newcombe_difference(3, 2, 1, 5),
    "newcombe: bad alpha": lambda: newcombe_difference(1, 2, 1, 5, alpha=2.0),
    "bootstrap: one observation": lambda: bootstrap_mean([1.0]),
    "bootstrap: two-dimensional": lambda: bootstrap_mean([[1.0, 2.0], [3.0, 4.0]]),
    "bootstrap: infinite value": lambda: bootstrap_mean([1.0, np.inf, 2.0]),
    "bootstrap: too few resamples": lambda: bootstrap_mean([1.0, 2.0, 3.0], n_boot=10),
    "bootstrap: bad alpha": lambda: bootstrap_mean([1.0, 2.0, 3.0], alpha=-0.1),
    "paired bootstrap: unequal lengths": lambda: bootstrap_difference([1, 2, 3], [1, 2], paired=True),
    "pearson: three pairs": lambda: pearson([1, 2, 3], [1, 2, 4]),
    "pearson: unequal lengths": lambda: pearson([1, 2, 3, 4, 5], [1, 2, 3, 4]),
    "pearson: constant x": lambda: pearson([1, 1, 1, 1, 1], [1, 2, 3, 4, 5]),
    "pearson: NaN": lambda: pearson([1, 2, np.nan, 4, 5], [1, 2, 3, 4, 5]),
    "spearman: three pairs": lambda: spearman([1, 2, 3], [1, 2, 4]),
    "bootstrap correlation: unknown method": lambda: bootstrap_correlation([1, 2, 3, 4], [4, 3, 2, 1], "kendall"),
    "rates: unequal lengths": lambda: rates_at_threshold([0.1, 0.2], [1], 0.5),
    "rates: labels not 0/1": lambda: rates_at_threshold([0.1, 0.2], [1, 2], 0.5),
    "rates: empty": lambda: rates_at_threshold([], [], 0.5),
    "rates: NaN score": lambda: rates_at_threshold([np.nan, 0.2], [1, 0], 0.5),
    "rates: NaN threshold": lambda: rates_at_threshold([0.1, 0.2], [1, 0], np.nan),
    "fpr_at_tpr: no positives": lambda: fpr_at_tpr([0.1, 0.2], [0, 0]),
    "fpr_at_tpr: target zero": lambda: fpr_at_tpr([0.1, 0.2], [1, 0], target_tpr=0.0),
    "fpr_at_tpr: target above one": lambda: fpr_at_tpr([0.1, 0.2], [1, 0], target_tpr=1.5),
    "fpr_at_tpr_estimate: no positives": lambda: fpr_at_tpr_estimate([0.1, 0.2], [0, 0]),
    "fpr_at_tpr_estimate: target zero": lambda: fpr_at_tpr_estimate([0.1, 0.2], [1, 0], target_tpr=0.0),
    "fpr_at_tpr_estimate: NaN score": lambda: fpr_at_tpr_estimate([np.nan, 0.2], [1, 0]),
    "crossed: nothing to resample": lambda: crossed_bootstrap(lambda r: {"x": 0.0}),
    "crossed: a pool of one model": lambda: crossed_bootstrap(lambda r: {"x": 0.0}, {"m": np.zeros(1)}),
    "points: empty": lambda: Points(np.array([], dtype=int)),
    "points: strata of another length": lambda: Points(np.arange(3), strata=np.arange(2)),
    "power: power one": lambda: power_statement(0.1, 0.0, 1e-4, 1e-2, {"m": 3}, power=1.0),
    "pearson with model noise: negative variance": lambda: pearson_with_model_noise([1, 2, 3, 4], [1, 3, 2, 4], -1.0, 4),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("units", [1, 5, 40, 300])
def test_zero_failure_bound_is_clopper_pearsons_for_no_failure(units):
    from scipy.stats import binomtest

    exact = binomtest(0, units).proportion_ci(0.95, method="exact").high   # one-sided 2.5 % above
    assert zero_failure_bound(units, 0.025) == pytest.approx(exact, rel=1e-9)
    needed = units_for_zero_failure_bound(exact, 0.025)
    assert zero_failure_bound(needed, 0.025) < exact <= zero_failure_bound(needed - 1, 0.025)
    with pytest.raises(ValueError, match="at least one unit"):
        zero_failure_bound(0)


# --------------------------------------------------------------------------- mean over fits


def test_mean_over_fits_without_point_noise_is_the_t_interval_over_fits():
    values = np.array([0.42, 0.55, 0.38, 0.61, 0.47])
    interval = mean_over_fits(values, 0.0, n=100)
    expected = scipy_stats.t.interval(0.95, len(values) - 1, values.mean(), scipy_stats.sem(values))
    assert interval.lower == pytest.approx(expected[0]) and interval.upper == pytest.approx(expected[1])


def test_mean_over_fits_with_identical_fits_is_the_normal_interval_over_points():
    interval = mean_over_fits([0.5, 0.5, 0.5], 0.01, n=100)
    assert interval.upper - interval.estimate == pytest.approx(scipy_stats.norm.ppf(0.975) * 0.1)


def test_mean_over_fits_is_cut_to_the_statistics_bounds_and_rejects_one_fit():
    assert mean_over_fits([0.9, 1.0], 0.01, n=10, bounds=(-1.0, 1.0)).upper == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        mean_over_fits([0.5], 0.01, n=10)


def test_mean_over_fits_covers_when_points_and_fits_both_vary():
    """Each fit adds its own noise (sd 0.1) to a point-level mean (sd 0.05, known to the
    interval); 4 fits. Coverage of the true mean over 4,000 simulated designs."""
    rng = np.random.default_rng(0)
    sims, fits, point_sd, fit_sd = 4000, 4, 0.05, 0.1
    point_level = rng.normal(0.0, point_sd, sims)
    values = point_level[:, None] + rng.normal(0.0, fit_sd, (sims, fits))
    covered = [(lambda i: i.lower <= 0.0 <= i.upper)(mean_over_fits(row, point_sd**2, n=100)) for row in values]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_a_reranked_statistic_can_take_the_normal_interval_around_its_estimate():
    """error-is-subpopulation's ends: the estimate -/+ z sd of the crossed replicates, cut to the
    statistic's bounds, where the percentile interval is centred off the estimate."""
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, (20, 60)) + np.linspace(0, 1, 60)[None, :]

    def top_share(replicate):
        weights = replicate.models["m"]
        mean = (weights[:, None] * values).sum(0) / weights.sum()
        points = replicate.points["p"]
        ranked = points[np.argsort(mean[points])]
        return {"top": float(np.mean(ranked[-10:] >= 30)) - float(np.mean(ranked[:10] >= 30))}

    arguments = (top_share, {"m": np.zeros(20)}, {"p": Points(np.arange(60))})
    normal = crossed_bootstrap(*arguments, n_boot=300, reselects=True, around_estimate=True,
                               bounds=(-1.0, 1.0))["top"]
    half = 1.959963984540054 * math.sqrt(normal.var_both)
    assert (normal.lower, normal.upper) == pytest.approx((max(normal.estimate - half, -1.0),
                                                          min(normal.estimate + half, 1.0)))
    assert "normal" in normal.method
    with pytest.raises(ValueError, match="re-select"):
        crossed_bootstrap(*arguments, n_boot=50, around_estimate=True)
