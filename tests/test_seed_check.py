"""The seed check's summary: flips, spread against the interval, supported controls."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.report import write_case_report
from harness.seed_check import main, summarise
from harness.verdict import ClaimResult, Control, Statistic, Threshold, absolute_value, margin_left


def result(estimate: float, control_lower: float) -> ClaimResult:
    return ClaimResult(claim="demo", case="one case", dataset="toy",
                       decisive=Statistic("effect", estimate, estimate - 0.1, estimate + 0.1, 40),
                       threshold=Threshold(0.0, "above", "the sign"),
                       control=Control(Statistic("effect, destroyed", control_lower + 0.1, control_lower,
                                                 control_lower + 0.2, 40), "the effect shuffled away"))


def test_a_flip_a_wide_spread_and_a_supported_control_are_counted(tmp_path):
    for seed, (estimate, control_lower) in enumerate([(0.3, -0.1), (-0.3, 0.05), (0.0, -0.1)]):
        write_case_report(result(estimate, control_lower), tmp_path / f"seed-{seed}")
    row = summarise(tmp_path).loc["demo/one case"]
    assert (row["supported"], row["refuted"], row["inconclusive"]) == (1, 1, 1) and row["flip"]
    assert row["controls supported"] == 1
    assert row["spread ratio"] > 1      # estimates 0.3, -0.3, 0 against half widths of 0.1


def rms_result(mean_square: float) -> ClaimResult:
    """grouped-leave-out's per-point part: a signed root of a mean square and of its interval's ends."""
    def root(x):
        return math.copysign(math.sqrt(abs(x)), x)

    return ClaimResult(claim="demo", case="signed root", dataset="toy",
                       decisive=Statistic("RMS", root(mean_square), root(mean_square - 0.01), root(mean_square + 0.01),
                                          30, components={"scale": "signed square"}),
                       threshold=Threshold(0.05, "below", "a margin"))


def test_the_spread_is_read_on_the_scale_the_interval_was_built_on(tmp_path):
    for seed, mean_square in enumerate([0.0025, -0.0025, 0.001]):
        write_case_report(rms_result(mean_square), tmp_path / f"seed-{seed}")
    row = summarise(tmp_path).loc["demo/signed root"]
    # Mean squares 0.0025, -0.0025, 0.001 (sd 0.0026) against half widths of 0.01: about 0.5. On the
    # root's scale the same runs read 0.05, -0.05, 0.032 against half widths near 0.1: above 1.
    assert 0.4 < row["spread ratio"] < 0.6
    roots = [rms_result(m).decisive for m in (0.0025, -0.0025, 0.001)]
    assert np.std([r.estimate for r in roots], ddof=1) / (np.mean([r.half_width for r in roots]) / 1.96) > 1


def test_the_spread_follows_one_statistic_when_the_deciding_part_changes_with_the_seed(tmp_path):
    """Two parts, "wide" (estimates near 0.5, half width 0.2) and "narrow" (near 0, half width
    0.01); "narrow" decides under two seeds of three. Mixing the parts' estimates would read a
    spread of about 0.29 against a narrow interval; following "narrow" reads its own."""
    for seed, (narrow, wide, decides) in enumerate([(0.001, 0.5, "narrow"), (-0.001, 0.55, "narrow"),
                                                    (0.0, 0.45, "wide")]):
        parts = {"narrow": Statistic("narrow", narrow, narrow - 0.01, narrow + 0.01, 30),
                 "wide": Statistic("wide", wide, wide - 0.2, wide + 0.2, 30)}
        write_case_report(ClaimResult(claim="demo", case="two parts", dataset="toy", decisive=parts[decides],
                                      threshold=Threshold(0.05, "below", "a margin"),
                                      statistics=list(parts.values())), tmp_path / f"seed-{seed}")
    row = summarise(tmp_path).loc["demo/two parts"]
    assert row["statistic"] == "narrow"
    assert row["spread ratio"] == pytest.approx(np.std([0.001, -0.001, 0.0], ddof=1) / (0.01 / 1.959963984540054))


def test_the_spread_follows_a_statistic_with_an_interval_over_a_missing_part(tmp_path):
    """A part without an interval (too few points in a bin) decides, as undecidable, under two
    seeds of three; the other part, with an interval under every seed, is the one followed."""
    for seed, (missing_decides, estimate) in enumerate([(True, 0.02), (True, 0.03), (False, 0.01)]):
        missing = Statistic("missing part", math.nan, math.nan, math.nan, 0)
        measured = Statistic("measured part", estimate, estimate - 0.02, estimate + 0.02, 30)
        write_case_report(ClaimResult(claim="demo", case="a missing part", dataset="toy",
                                      decisive=missing if missing_decides else measured,
                                      threshold=Threshold(0.05, "below", "a margin"),
                                      statistics=[missing, measured]), tmp_path / f"seed-{seed}")
    row = summarise(tmp_path).loc["demo/a missing part"]
    assert row["statistic"] == "measured part"
    assert row["spread ratio"] == pytest.approx(np.std([0.02, 0.03, 0.01], ddof=1) / (0.02 / 1.959963984540054))


def test_a_folded_statistic_is_read_as_the_signed_one_its_interval_came_from():
    """margin - |D| and |D| fold D's interval at 0; the bootstrap built D's, so the spread is read there."""
    signed = Statistic("D", 0.01, -0.04, 0.06, 30)
    assert margin_left(signed, 0.05).on_interval_scale() == pytest.approx((0.01, -0.04, 0.06))
    assert absolute_value(signed).on_interval_scale() == pytest.approx((0.01, -0.04, 0.06))
    assert margin_left(absolute_value(signed), 0.05).on_interval_scale() == pytest.approx((0.01, -0.04, 0.06))
    # Folded, the same figures read 0.04 [-0.01, 0.05]: a half width of 0.03, not D's 0.05.
    assert margin_left(signed, 0.05).half_width == pytest.approx(0.03)


def test_json_output_stays_one_document_when_a_case_fails(tmp_path, capsys):
    for seed, estimate in enumerate([0.3, -0.3]):
        write_case_report(result(estimate, -0.1), tmp_path / f"seed-{seed}")
    with pytest.raises(SystemExit) as failed:
        main(["--summarise-only", "--out", str(tmp_path), "--json"])
    assert failed.value.code == 1
    output = capsys.readouterr()
    assert [row["case"] for row in json.loads(output.out)] == ["demo/one case"]
    assert "flip" in output.err


def test_the_ratio_carries_its_chi_square_interval_and_the_seeds_covering_their_mean(tmp_path):
    """Eight seeds: a ratio's 95 % interval runs from 0.661 to 2.035 times it (chi-square on 7
    degrees of freedom). The estimates 0, 0.1, ..., 0.7 (mean 0.35) with half widths of 0.3 hold the
    mean under the seeds 1 to 6 (0.05 to 0.65), not under 0 and 7."""
    for seed in range(8):
        estimate = seed / 10
        write_case_report(ClaimResult(claim="demo", case="eight seeds", dataset="toy",
                                      decisive=Statistic("effect", estimate, estimate - 0.3, estimate + 0.3, 40),
                                      threshold=Threshold(0.0, "above", "the sign")), tmp_path / f"seed-{seed}")
    row = summarise(tmp_path).loc["demo/eight seeds"]
    ratio = np.std(np.arange(8) / 10, ddof=1) / (0.3 / 1.959963984540054)
    assert row["spread ratio"] == pytest.approx(ratio)
    assert (row["ratio lower"], row["ratio upper"]) == pytest.approx((0.6612 * ratio, 2.0353 * ratio), rel=1e-3)
    assert (row["seeds covering the mean"], row["seeds with an interval"]) == (6, 8)


def test_a_part_whose_name_carries_a_count_is_followed_under_every_seed(tmp_path):
    """error-is-subpopulation names its part with k, the points at each end, which follows the
    influential points a seed selects: "29 highest minus 29 lowest" under two seeds, "31 ..." under
    a third. All three are the same part; following the exact name read two seeds of three."""
    for seed, (k, estimate) in enumerate([(29, 0.1), (29, 0.2), (31, 0.6)]):
        part = Statistic(f"share, {k} highest minus {k} lowest error", estimate, estimate - 0.1, estimate + 0.1, 40)
        write_case_report(ClaimResult(claim="demo", case="counted part", dataset="toy", decisive=part,
                                      threshold=Threshold(0.0, "above", "the sign")), tmp_path / f"seed-{seed}")
    row = summarise(tmp_path).loc["demo/counted part"]
    assert row["seeds with an interval"] == 3
    assert row["spread ratio"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1) / (0.1 / 1.959963984540054))
