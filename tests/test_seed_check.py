"""The seed check's summary: flips, spread against the interval, supported controls."""

from __future__ import annotations

from harness.report import write_case_report
from harness.seed_check import summarise
from harness.verdict import ClaimResult, Control, Statistic, Threshold


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
