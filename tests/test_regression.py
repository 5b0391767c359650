"""The regression check catches a deliberate change: a sampling rate wired in by mistake.

Runs one real claim case (ridge on the smoke synthetic set) through pytest in subprocesses:
first writing a baseline, then unchanged (must pass), then with a plugin that makes
``subsampled_plan`` silently use r = 0.5 instead of the case's r = 0.7. That run must fail
with a diff naming the moved statistic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


@pytest.fixture
def claim_project(pytester, tmp_path):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    claims = pytester.mkdir("claims")
    (claims / "test_approx_overestimates.py").write_text(
        (ROOT / "claims" / "test_approx_overestimates.py").read_text())
    return ["claims/test_approx_overestimates.py", "--profile", "smoke", "-k", "ridge and synthetic",
            "-p", "no:cacheprovider", "--store", str(tmp_path / "store"),
            "--reports-dir", str(tmp_path / "reports"), "--baseline", str(tmp_path / "baseline.json")]


def ended_without_failure(run) -> bool:
    """One case, supported (passed) or inconclusive (xfailed): whichever its verdict, not a failure."""
    outcomes = run.parseoutcomes()
    return outcomes.get("passed", 0) + outcomes.get("xfailed", 0) == 1 and not outcomes.get("failed", 0)


def test_a_mistaken_sampling_rate_fails_the_regression_check_naming_the_statistic(pytester, claim_project):
    written = pytester.runpytest_subprocess(*claim_project, "--update-baseline")
    assert ended_without_failure(written)
    unchanged = pytester.runpytest_subprocess(*claim_project)
    assert ended_without_failure(unchanged)

    pytester.makepyfile(mistaken_rate="""
        import harness.experiments
        from harness.masks import subsampled_plan

        def mistaken(n, models, rate, seed=0):
            return subsampled_plan(n, models, 0.5, seed)

        harness.experiments.subsampled_plan = mistaken
    """)
    changed = pytester.runpytest_subprocess(*claim_project, "-p", "mistaken_rate")
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*regression against the baseline*",
                                  "*overestimation of small sub-populations*moved*tolerance*"])


def test_seed_changes_the_models_not_the_data_and_is_recorded(pytester, claim_project, tmp_path):
    import json

    arguments = [a for a in claim_project if a not in ("--baseline", str(tmp_path / "baseline.json"))]
    for seed in (0, 3):
        reports = tmp_path / f"reports-{seed}"
        run = pytester.runpytest_subprocess(*arguments, "--seed", str(seed), "--reports-dir", str(reports))
        outcomes = run.parseoutcomes()
        assert sum(outcomes.get(kind, 0) for kind in ("passed", "xfailed", "failed")) == 1, outcomes
    first, second = (json.loads(next((tmp_path / f"reports-{seed}").glob("*/*.json")).read_text()) for seed in (0, 3))
    assert (first["seed"], second["seed"]) == (0, 3)
    assert first["dataset"] == second["dataset"]
    assert first["decisive"]["estimate"] != second["decisive"]["estimate"]   # other models
    runs = [json.loads(path.read_text())["seed"] for path in (tmp_path / "store").glob("*/config.json")]
    assert sorted(set(runs)) == [0, 3]


def test_what_a_user_keeps_in_the_reports_directory_survives_a_collection_and_a_claims_run(
        pytester, claim_project, tmp_path):
    reports = tmp_path / "reports"
    (reports / "my_thesis_data").mkdir(parents=True)
    (reports / "my_thesis_data" / "chapter1.md").write_text("years of work")
    (reports / "notes.txt").write_text("mine")
    arguments = [a for a in claim_project if a not in ("--baseline", str(tmp_path / "baseline.json"))]
    assert pytester.runpytest_subprocess(*arguments, "--collect-only").ret == 0
    assert ended_without_failure(pytester.runpytest_subprocess(*arguments))
    assert (reports / "my_thesis_data" / "chapter1.md").read_text() == "years of work"
    assert (reports / "notes.txt").read_text() == "mine"
    assert (reports / "SUMMARY.md").is_file()  # the run did write its own reports beside them
