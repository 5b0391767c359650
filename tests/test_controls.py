"""Negative controls: how a result carries one, how reports and the baseline show it, how a
supported control fails its case, and the draws that destroy each claim's effect."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from harness import controls
from harness.data import synthetic
from harness.profiles import SMOKE, size_bin
from harness.report import baseline_from_results, compare_to_baseline, write_case_report, write_summary
from harness.verdict import INCONCLUSIVE, REFUTED, SUPPORTED, ClaimResult, Control, Statistic, Threshold

pytest_plugins = ["pytester"]

ABOVE_ZERO = Threshold(0.0, "above", "the sign is the claim")


def result_with_control(lower: float, upper: float, decisive=(0.1, 0.3)) -> ClaimResult:
    return ClaimResult(claim="approx-overestimates", case="ridge on synthetic", dataset="synthetic",
                       decisive=Statistic("overestimation", sum(decisive) / 2, *decisive, n=40),
                       threshold=ABOVE_ZERO,
                       control=Control(Statistic("overestimation, bins shuffled", (lower + upper) / 2, lower, upper,
                                                 n=40), "size bins shuffled among the scored points"))


@pytest.mark.parametrize("lower, upper, expected", [(-0.1, 0.1, INCONCLUSIVE), (-0.3, -0.1, REFUTED),
                                                     (0.05, 0.2, SUPPORTED)],
                         ids=["a null control straddles the threshold", "a control on the wrong side is refuted",
                              "a control past the threshold is supported"])
def test_the_control_is_decided_against_the_claims_threshold(lower, upper, expected):
    assert result_with_control(lower, upper).control_verdict == expected


def test_a_result_without_a_control_has_no_control_verdict():
    result = replace(result_with_control(-0.1, 0.1), control=None)
    assert result.control_verdict is None and result.to_dict()["control"] is None


def test_the_control_round_trips_through_json_with_its_verdict():
    result = result_with_control(-0.1, 0.1)
    record = json.loads(json.dumps(result.to_dict()))
    assert record["control"]["verdict"] == INCONCLUSIVE
    assert record["control"]["destroyed"] == "size bins shuffled among the scored points"
    assert ClaimResult.from_dict(record) == result


def test_a_control_must_say_what_it_destroyed():
    with pytest.raises(ValueError, match="destroyed"):
        Control(Statistic("x", 0.0, -1.0, 1.0, 3), "")


def test_report_and_summary_show_the_control(tmp_path):
    markdown = write_case_report(result_with_control(-0.1, 0.1), tmp_path).read_text()
    assert "## Negative control" in markdown and "Control verdict: INCONCLUSIVE" in markdown
    summary = write_summary(tmp_path).read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| claim | case"))
    row = next(line for line in summary.splitlines() if line.startswith("| approx-overestimates"))
    assert "| control |" in header and "inconclusive 0 [-0.1, 0.1]" in row


def test_a_control_whose_verdict_changes_drifts_from_the_baseline():
    baseline = baseline_from_results([result_with_control(-0.1, 0.1)])
    assert compare_to_baseline(result_with_control(-0.1, 0.1), baseline) == []
    drifts = compare_to_baseline(result_with_control(0.05, 0.2), baseline)
    assert any(d.kind == "verdict" and d.statistic.startswith("control: ") for d in drifts)
    assert "control verdict changed inconclusive -> supported" in str(drifts[0])


CONTROLLED_CLAIM = '''
import pytest
from harness.verdict import ClaimResult, Control, Statistic, Threshold

@pytest.mark.parametrize("control_lower", [-0.1, 0.05], ids=["a null control", "a supported control"])
def test_claim(conclude, control_lower):
    conclude(ClaimResult(claim="demo", case=f"control at {control_lower}", dataset="toy",
                         decisive=Statistic("effect", 0.2, 0.1, 0.3, 40),
                         threshold=Threshold(0.0, "above", "the sign"),
                         control=Control(Statistic("effect, destroyed", control_lower + 0.1, control_lower,
                                                   control_lower + 0.2, 40), "the effect shuffled away")))
'''


def test_a_supported_control_fails_its_case_even_when_the_claim_is_supported(pytester, tmp_path):
    from pathlib import Path

    pytester.makeconftest((Path(__file__).resolve().parents[1] / "conftest.py").read_text())
    claims = pytester.mkdir("claims")
    (claims / "test_demo.py").write_text(CONTROLLED_CLAIM)
    run = pytester.runpytest_subprocess("claims/test_demo.py", "-p", "no:cacheprovider",
                                        "--reports-dir", str(tmp_path / "reports"))
    run.assert_outcomes(passed=1, failed=1)
    run.stdout.fnmatch_lines(["*the test cannot tell these apart*the effect shuffled away*"])


# ----------------------------------------------------------------------------- the draws


def test_shuffled_keeps_the_values_and_breaks_their_order():
    values = np.arange(200)
    mixed = controls.shuffled(values, seed=1)
    assert sorted(mixed) == list(values) and (mixed != values).mean() > 0.9
    assert np.array_equal(mixed, controls.shuffled(values, seed=1))
    assert isinstance(controls.shuffled(("a", "b", "c"), seed=0), list)


def test_random_half_of_groups_keeps_each_group_whole():
    groups = np.repeat(np.arange(10), 3)
    half = controls.random_half_of_groups(groups, np.ones(30, dtype=bool), seed=2)
    assert half.sum() == 15
    for group in range(10):
        assert len(set(half[groups == group])) == 1


@pytest.fixture(scope="module")
def data():
    return synthetic(SMOKE.synthetic)


def test_stand_ins_are_unpurged_and_match_the_purged_size_bins(data):
    sizes = dict(zip(*np.unique(data.group_train, return_counts=True)))
    singletons = np.array([g for g, n in sizes.items() if n == 1 and (data.group_test == g).any()])
    purged = singletons[:3]
    stand_ins = controls.stand_in_groups(data, purged, seed=0)
    assert len(stand_ins) == 3 and not np.isin(stand_ins, purged).any()
    assert set(size_bin([sizes[g] for g in stand_ins])) == {"singleton"}


def test_a_purging_selection_takes_whole_subpopulations_and_spares_the_excluded(data):
    exclude = data.group_size_train == 1
    chosen = controls.purging_selection(data, 30, exclude, seed=0)
    assert chosen.sum() == 30 and not (chosen & exclude).any()
    touched = np.unique(data.group_train[chosen])
    whole = [g for g in touched if chosen[data.group_train == g].all()]
    assert len(whole) >= len(touched) - 1   # only the last group may be taken in part
