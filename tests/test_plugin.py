"""The suite as a pytest plugin: a project of one's own gets its options and fixtures from the
installed entry point, without copying anything; this repository's conftest.py adds nothing twice."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]

OWN_CLAIM = '''
from harness.verdict import ClaimResult, Statistic, Threshold


def test_my_claim(profile, seed, store, device, conclude):
    assert profile.name == "smoke" and seed == 3
    conclude(ClaimResult(claim="my-claim", case="my case", dataset="mine",
                         decisive=Statistic("effect", 0.2, 0.1, 0.3, 40),
                         threshold=Threshold(0.0, "above", "the sign")))
'''


def test_a_project_of_ones_own_gets_the_options_fixtures_report_and_summary(pytester):
    pytester.makepyfile(test_mine=OWN_CLAIM)
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--profile", "smoke", "--seed", "3",
                                        "--store", str(pytester.path / "store"))
    run.assert_outcomes(passed=1)
    run.stdout.fnmatch_lines(["memsuite: my-claim/my case: SUPPORTED, effect = 0.2 ?0.1, 0.3? (n = 40 models)*",
                              "memsuite: claim summary written to *SUMMARY.md"])
    assert (pytester.path / "reports" / "my-claim" / "my_case.json").is_file()
    assert (pytester.path / "reports" / "SUMMARY.md").is_file()


def test_the_repositorys_conftest_adds_no_option_twice(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--help")
    assert run.ret == 0
    assert sum("--profile=" in line for line in run.stdout.lines) == 1


def test_the_conftest_registers_the_plugin_where_entry_points_are_not_loaded(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makepyfile(test_mine=OWN_CLAIM)
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--profile", "smoke", "--seed", "3",
                                        "--store", str(pytester.path / "store"))
    run.assert_outcomes(passed=1)


def test_only_runs_naming_a_claims_path_clear_old_reports_and_write_the_summary(pytester):
    pytester.makeini("[pytest]\nmemsuite_claim_paths = claims\n")
    old = pytester.mkdir("reports") / "my-claim"
    old.mkdir()
    pytester.makepyfile(test_mine=OWN_CLAIM)
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--profile", "smoke", "--seed", "3",
                                        "--store", str(pytester.path / "store"), "test_mine.py")
    run.assert_outcomes(passed=1)
    assert not (pytester.path / "reports" / "SUMMARY.md").exists()


def test_ray_address_without_the_ray_executor_is_a_usage_error(pytester):
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ray-address", "auto")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*--ray-address needs --executor ray*"])

