"""Verdicts, case reports, the summary and regression against a baseline."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from harness import report
from harness.report import (
    Drift,
    baseline_from_results,
    clear_previous_reports,
    compare_to_baseline,
    format_drifts,
    load_results,
    write_case_report,
    write_summary,
)
from harness.verdict import (
    INCONCLUSIVE,
    REFUTED,
    SUPPORTED,
    ClaimResult,
    Statistic,
    Threshold,
    decide,
    intersection_union,
)

ABOVE_ZERO = Threshold(0.0, "above", "IMN25 4.2: overestimation must exceed 0")
BELOW_HALF = Threshold(0.5, "below", "test threshold")


def interval(lower: float, upper: float, name: str = "overestimation_small") -> Statistic:
    return Statistic(name, (lower + upper) / 2, lower, upper, n=40)


def make_result(claim: str = "approx-overestimates", case: str = "syn-r0.7", **changes) -> ClaimResult:
    values = dict(
        claim=claim, case=case, dataset="synthetic",
        decisive=Statistic("overestimation_small", 0.21, 0.15, 0.27, n=40, note="mean over small sub-populations"),
        threshold=ABOVE_ZERO,
        statistics=[Statistic("within_5pct", 0.085, 0.06, 0.11, n=500, unit="points"),
                    Statistic("models_per_point", 20.0, 20.0, 20.0, n=1)],
        paper={"figure": "8.5 % of points within 5 % error", "source": "IMN25 4.2"},
        models_trained=40, seconds=12.5, notes=["tiny profile"],
    )
    return ClaimResult(**(values | changes))


# ----------------------------------------------------------------------------- decide

@pytest.mark.parametrize("lower, upper, expected", [
    (0.1, 0.3, SUPPORTED), (-0.3, -0.1, REFUTED), (-0.1, 0.1, INCONCLUSIVE),
    (0.0, 0.2, INCONCLUSIVE),   # touches the threshold from the claim's side: not strictly above
    (-0.2, 0.0, INCONCLUSIVE),  # a bound equal to the threshold does not exclude it
    (0.0, 0.0, INCONCLUSIVE),
    (1e-12, 0.2, SUPPORTED),
])
def test_decide_above(lower, upper, expected):
    assert decide(interval(lower, upper), ABOVE_ZERO) == expected


@pytest.mark.parametrize("lower, upper, expected", [
    (0.1, 0.3, SUPPORTED), (0.6, 0.9, REFUTED), (0.4, 0.6, INCONCLUSIVE),
    (0.3, 0.5, INCONCLUSIVE), (0.5, 0.7, INCONCLUSIVE), (0.5, 0.5, INCONCLUSIVE), (0.5 + 1e-12, 0.7, REFUTED),
])
def test_decide_below(lower, upper, expected):
    assert decide(interval(lower, upper), BELOW_HALF) == expected


def test_nan_interval_is_inconclusive():
    assert decide(Statistic("s", math.nan, math.nan, math.nan, n=0), ABOVE_ZERO) == INCONCLUSIVE


@pytest.mark.parametrize("make", [
    lambda: Threshold(0.0, "greater", "x"),
    lambda: Threshold(0.0, "above", ""),
    lambda: Statistic("s", 0.0, 1.0, -1.0, n=3),
    lambda: Statistic("s", 0.0, 0.0, 0.0, n=-1),
    lambda: make_result(claim=""),
])
def test_bad_input_raises_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_numpy_scalars_become_plain_numbers():
    statistic = Statistic("s", np.float32(0.5), np.float64(0.25), np.float32(0.75), n=np.int64(7))
    assert type(statistic.estimate) is float and type(statistic.n) is int
    json.dumps(statistic.as_dict())


# ----------------------------------------------------------------------------- ClaimResult

def test_round_trip_through_json():
    result = make_result(seed=3, decisive=Statistic("overestimation_small", 0.05, -0.01, 0.11, n=40,
                                                    components={"var_points": 1e-4, "var_models": 5e-4,
                                                                "models_per_arm": {"models": 20}}))
    back = ClaimResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result and back.seed == 3
    assert back.power == result.power and back.power[0] is not None
    assert back.verdict == INCONCLUSIVE


def test_to_dict_has_the_report_keys():
    d = make_result().to_dict()
    for key in ("claim", "case", "dataset", "verdict", "decisive", "threshold", "statistics", "paper",
                "models_trained", "seconds", "seed", "power", "models_per_arm_to_decide", "p_value", "notes",
                "versions"):
        assert key in d
    assert d["versions"]["python"].count(".") == 2
    assert "numpy" in d["versions"]


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknwon"):
        ClaimResult.from_dict(make_result().to_dict() | {"unknwon": 1})


def test_message_names_verdict_statistic_threshold_and_paper():
    decisive = Statistic("overestimation_small", 0.1, -0.1, 0.3, n=40,
                         components={"var_points": 1e-4, "var_models": 0.01, "models_per_arm": {"models": 30}})
    text = make_result(decisive=decisive).message()
    for part in ("INCONCLUSIVE", "overestimation_small", "[-0.1, 0.3]", "n = 40 models", "above 0",
                 "IMN25 4.2: overestimation must exceed 0", "8.5 % of points within 5 % error",
                 "What would decide it: about 256 models (now 30)"):
        assert part in text


def test_statistic_named_twice_must_agree():
    result = make_result(statistics=[interval(0.0, 1.0)])  # same name as the decisive one, different values
    with pytest.raises(ValueError, match="overestimation_small"):
        result.all_statistics()


# ----------------------------------------------------------------------------- reports

def _figure():
    figure, axes = plt.subplots()
    axes.plot([0, 1, 2], [0.1, 0.4, 0.2])
    return figure


@pytest.mark.parametrize("tabulate_installed", [False, pytest.param(True, id="tabulate")])
def test_write_case_report(tmp_path, monkeypatch, tabulate_installed):
    if tabulate_installed:
        pytest.importorskip("tabulate")
    monkeypatch.setattr(report, "_HAS_TABULATE", tabulate_installed)
    result = make_result(case="syn/tail 1.5|r0.7")
    figure = _figure()
    table = pd.DataFrame({"threshold": [0.25, 0.45], "false_positive_rate": [np.float32(0.16), 0.7]})

    markdown_path = write_case_report(result, tmp_path, figures={"error vs size": figure}, tables={"fpr": table})

    claim_dir = tmp_path / "approx-overestimates"
    assert markdown_path == claim_dir / "syn_tail_1.5_r0.7.md"
    record = json.loads((claim_dir / "syn_tail_1.5_r0.7.json").read_text())
    assert record["case"] == "syn/tail 1.5|r0.7" and record["verdict"] == SUPPORTED
    assert record["figures"] == {"error vs size": "syn_tail_1.5_r0.7-error_vs_size.png"}
    assert (claim_dir / "syn_tail_1.5_r0.7-error_vs_size.png").read_bytes()[:4] == b"\x89PNG"
    assert not plt.fignum_exists(figure.number)

    markdown = markdown_path.read_text()
    assert "**Verdict: SUPPORTED**" in markdown
    assert "![error vs size](syn_tail_1.5_r0.7-error_vs_size.png)" in markdown
    assert "IMN25 4.2: overestimation must exceed 0" in markdown
    assert "within_5pct" in markdown and "models_per_point" in markdown
    assert "false_positive_rate" in markdown and "0.16" in markdown


def test_figures_are_closed_when_writing_fails(tmp_path):
    figure = _figure()
    with pytest.raises(ValueError, match="collide"):
        write_case_report(make_result(), tmp_path, figures={"a b": _figure(), "a_b": figure})
    assert not plt.fignum_exists(figure.number)


def test_write_summary_tables_and_links_cases(tmp_path):
    write_case_report(make_result("approx-overestimates", "syn-r0.7"), tmp_path)
    write_case_report(make_result("sampling-rate-bias", "syn-r0.95", decisive=interval(-0.1, 0.1)), tmp_path)

    summary_path = write_summary(tmp_path)

    summary = summary_path.read_text()
    assert "2 cases: 1 supported, 0 refuted, 1 inconclusive." in summary
    table, family = summary.split("## Each claim's cases as a family (Holm)")
    rows = [line for line in table.splitlines() if line.startswith("| approx") or line.startswith("| sampling")]
    assert len(rows) == 2 and rows[0].startswith("| approx-overestimates | syn-r0.7 |")
    assert "| approx-overestimates | 1 | 1 | 1 | syn-r0.7 |" in family
    assert "| sampling-rate-bias | 1 | 0 | 0 | none |" in family
    assert "[report](approx-overestimates/syn-r0.7.md)" in rows[0]
    assert "[report](sampling-rate-bias/syn-r0.95.md)" in rows[1]
    assert "0.21 [0.15, 0.27]" in rows[0]
    assert [r["claim"] for r in json.loads((tmp_path / "summary.json").read_text())] == [
        "approx-overestimates", "sampling-rate-bias"]
    assert [r.key for r in load_results(tmp_path)] == [
        "approx-overestimates/syn-r0.7", "sampling-rate-bias/syn-r0.95"]


def test_the_summary_sets_the_papers_figure_beside_each_real_data_case(tmp_path):
    write_case_report(make_result("approx-overestimates", "syn-r0.7"), tmp_path)
    write_case_report(make_result("approx-overestimates", "ridge on mnist", dataset="mnist",
                                  decisive=Statistic("overestimation_small", -0.032, -0.066, -0.001, n=30)), tmp_path)
    write_case_report(make_result("sampling-rate-bias", "syn-r0.95", paper={}), tmp_path)
    papers = write_summary(tmp_path).read_text().split("## The papers beside the suite, on real data")[1]
    rows = {line.split(" | ")[0].strip("| "): line for line in papers.splitlines() if line.startswith("| ")}
    assert "8.5 % of points within 5 % error (IMN25 4.2)" in rows["approx-overestimates"]
    assert "ridge on mnist: overestimation_small = -0.032 [-0.066, -0.001], refuted" in rows["approx-overestimates"]
    assert "syn-r0.7" not in rows["approx-overestimates"]  # synthetic cases are the table above
    assert "not stated" in rows["sampling-rate-bias"] and "no case on real data" in rows["sampling-rate-bias"]


def test_load_results_names_a_broken_file(tmp_path):
    (tmp_path / "claim").mkdir()
    (tmp_path / "claim" / "case.json").write_text("{not json")
    with pytest.raises(ValueError, match="case.json"):
        load_results(tmp_path)


# ----------------------------------------------------------------------------- baseline

def _baseline_of(result: ClaimResult) -> dict:
    return json.loads(json.dumps(baseline_from_results([result])))  # as if read back from fixtures/


def test_identical_result_has_no_drift():
    result = make_result()
    assert compare_to_baseline(result, _baseline_of(result)) == []
    assert format_drifts([]) == "No drift from the baseline."


def test_statistic_far_outside_its_interval_drifts():
    baseline = _baseline_of(make_result())
    moved = make_result(statistics=[Statistic("within_5pct", 0.5, 0.47, 0.53, n=500, unit="points"),
                                    Statistic("models_per_point", 20.0, 20.0, 20.0, n=1)])
    drifts = compare_to_baseline(moved, baseline)
    assert [(d.statistic, d.kind) for d in drifts] == [("within_5pct", "statistic")]
    assert drifts[0].tolerance == pytest.approx(math.hypot(0.025, 0.03))
    assert "within_5pct moved 0.085 -> 0.5" in format_drifts(drifts)


def test_small_move_inside_tolerance_is_no_drift():
    baseline = _baseline_of(make_result())
    nudged = make_result(decisive=Statistic("overestimation_small", 0.25, 0.19, 0.31, n=40))
    assert compare_to_baseline(nudged, baseline) == []


def test_deterministic_statistic_drifts_on_any_change():
    baseline = _baseline_of(make_result())
    changed = make_result(statistics=[Statistic("within_5pct", 0.085, 0.06, 0.11, n=500, unit="points"),
                                      Statistic("models_per_point", 21.0, 21.0, 21.0, n=1)])
    assert [d.statistic for d in compare_to_baseline(changed, baseline)] == ["models_per_point"]


def test_verdict_flip_is_a_drift():
    baseline = _baseline_of(make_result())
    flipped = make_result(decisive=Statistic("overestimation_small", -0.01, -0.02, -0.001, n=40))
    drifts = compare_to_baseline(flipped, baseline)
    assert drifts[0] == Drift("approx-overestimates/syn-r0.7", "overestimation_small", SUPPORTED, REFUTED, None,
                              "verdict")
    assert str(drifts[0]) == "approx-overestimates/syn-r0.7: verdict changed supported -> refuted"


def test_missing_statistic_drifts_and_new_one_does_not():
    baseline = _baseline_of(make_result())
    changed = make_result(statistics=[Statistic("within_5pct", 0.085, 0.06, 0.11, n=500, unit="points"),
                                      Statistic("brand_new", 1.0, 0.0, 2.0, n=3)])
    drifts = compare_to_baseline(changed, baseline)
    assert [(d.statistic, d.kind) for d in drifts] == [("models_per_point", "missing")]
    assert "models_per_point (was 20) is missing now" in str(drifts[0])


def test_case_new_since_baseline_has_no_drift():
    baseline = _baseline_of(make_result())
    assert compare_to_baseline(make_result(case="other"), baseline) == []


def test_drift_message_matches_the_documented_form():
    drift = Drift("approx-overestimates/syn-r0.7", "overestimation_small", 0.21, 0.02, 0.05, "statistic")
    assert str(drift) == ("approx-overestimates/syn-r0.7: statistic overestimation_small moved 0.21 -> 0.02 "
                          "(tolerance 0.05)")


def test_intersection_union_picks_a_refuted_part_then_a_missing_one_then_the_weakest():
    supported, weak = interval(0.1, 0.3, "a"), interval(0.01, 0.5, "b")
    refuted, missing = interval(-0.3, -0.1, "c"), Statistic("d", math.nan, math.nan, math.nan, n=0)
    assert intersection_union([supported, weak], ABOVE_ZERO).name == "b"
    assert intersection_union([supported, missing, refuted], ABOVE_ZERO).name == "c"
    assert intersection_union([supported, missing], ABOVE_ZERO).name == "d"
    assert intersection_union([interval(0.1, 0.3, "a"), interval(0.2, 0.45, "b")], BELOW_HALF).name == "b"
    with pytest.raises(ValueError):
        intersection_union([], ABOVE_ZERO)


def test_clearing_old_reports_removes_only_what_a_claims_run_wrote(tmp_path):
    write_case_report(make_result(), tmp_path)
    write_summary(tmp_path)
    thesis = tmp_path / "my_thesis_data"
    thesis.mkdir()
    (thesis / "chapter1.md").write_text("years of work")
    mixed = tmp_path / "approx-plus-notes"
    mixed.mkdir()
    (mixed / "case.json").write_text(json.dumps({"claim": "c", "case": "x", "verdict": "supported"}))
    (mixed / "notes.txt").write_text("mine")
    lookalike = tmp_path / "data"
    lookalike.mkdir()
    (lookalike / "results.json").write_text(json.dumps({"accuracy": 0.9}))
    (tmp_path / "keep.txt").write_text("mine too")

    removed = clear_previous_reports(tmp_path)

    assert sorted(p.name for p in removed) == ["SUMMARY.md", "approx-overestimates", "summary.json"]
    for kept in (thesis / "chapter1.md", mixed / "notes.txt", lookalike / "results.json", tmp_path / "keep.txt"):
        assert kept.exists()
