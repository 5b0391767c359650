"""Options, markers and shared fixtures of the suite (claims/ and tests/).

How a claim test ends (see README, "Verdicts"):
- supported    -> passes;
- refuted      -> fails with the figures, unless ``--baseline`` holds the same refuted
                  verdict for the case (a known result): then it is an xfail, so a regression
                  run fails only on change;
- inconclusive -> xfail with what would decide it (models per arm, or more points)
                  (``--inconclusive=fail`` makes it fail);
- any drift from ``--baseline`` beyond the statistics' own intervals -> fails with the diff;
- a supported negative control (the same pipeline with the claim's effect destroyed) -> fails,
  whatever the verdict: the test cannot tell the claim's effect from its absence.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser):
    group = parser.getgroup("memsuite", "memorization claim suite")
    group.addoption("--profile", default=os.environ.get("MEMSUITE_PROFILE", "default"),
                    choices=["smoke", "default", "paper"],
                    help="budget of the claims: smoke (CI, minutes), default (laptop CPU, ~20 min "
                         "on 2 cores), paper (the papers' scale, for a GPU)")
    group.addoption("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    group.addoption("--store", default=None,
                    help="result store folder (default: $MEMSUITE_STORE or ~/.cache/memsuite)")
    group.addoption("--reports-dir", default=str(ROOT / "reports"), help="where reports are written")
    group.addoption("--baseline", default=None, help="regression baseline JSON to compare every case with")
    group.addoption("--update-baseline", action="store_true",
                    help="rewrite --baseline from this run's results at the end of the session")
    group.addoption("--inconclusive", default="xfail", choices=["xfail", "fail"],
                    help="how an inconclusive verdict ends (never a silent pass)")
    group.addoption("--seed", default=0, type=int,
                    help="seed of every mask draw, training seed and random selection (not of the data): "
                         "rerun with another to see whether a verdict survives other models (default 0)")


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _runs_claims(config) -> bool:
    return any("claims" in str(a) for a in config.args)


def pytest_configure(config):
    from harness import profiles

    if config.getoption("--profile") not in profiles.PROFILES:   # a default from MEMSUITE_PROFILE skips argparse
        raise pytest.UsageError(f"unknown profile {config.getoption('--profile')!r} (from --profile or "
                                f"MEMSUITE_PROFILE); choose one of {sorted(profiles.PROFILES)}")
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "paper: runs only with --profile paper")
    config.addinivalue_line("markers", "claim(id): the CLAIMS.md claim a test checks")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        # Workers on a small machine share its cores instead of each spawning one thread per core.
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    from hypothesis import HealthCheck, settings

    for profile in profiles.PROFILES.values():
        settings.register_profile(profile.name, max_examples=profile.hypothesis_examples,
                                  deadline=None, derandomize=True, print_blob=True,
                                  suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(config.getoption("--profile"))
    if config.getoption("--store"):
        # Everything keyed beside the runs (e.g. cached image embeddings) follows --store.
        os.environ["MEMSUITE_STORE"] = str(Path(config.getoption("--store")).resolve())
    if config.getoption("--update-baseline") and not config.getoption("--baseline"):
        raise pytest.UsageError("--update-baseline needs --baseline PATH")
    if not _is_worker(config) and _runs_claims(config):
        # A claims run writes a fresh report set; only what an earlier run wrote is removed.
        from harness.report import clear_previous_reports

        clear_previous_reports(Path(config.getoption("--reports-dir")))


def pytest_collection_modifyitems(config, items):
    import torch

    paper = config.getoption("--profile") == "paper"
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU: run on a machine with one, "
                                                    "with --device cuda"))
        if "paper" in item.keywords and not paper:
            item.add_marker(pytest.mark.skip(reason="paper-scale case: run with --profile paper "
                                                    "(a GPU is advised)"))


def pytest_generate_tests(metafunc):
    """Claim modules list their cases per profile in ``cases(profile)``; each becomes a test id."""
    if "case" in metafunc.fixturenames and hasattr(metafunc.module, "cases"):
        from harness import profiles

        profile = profiles.get(metafunc.config.getoption("--profile"))
        cases = metafunc.module.cases(profile)
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def pytest_sessionfinish(session, exitstatus):
    if _is_worker(session.config) or not _runs_claims(session.config):
        return
    reports = Path(session.config.getoption("--reports-dir"))
    if not any(p.suffix == ".json" for p in reports.glob("*/*.json")):
        return
    from harness import report

    summary = report.write_summary(reports)
    baseline_path = session.config.getoption("--baseline")
    if session.config.getoption("--update-baseline"):
        baseline = report.baseline_from_results(report.load_results(reports))
        Path(baseline_path).parent.mkdir(parents=True, exist_ok=True)
        Path(baseline_path).write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(f"memsuite: claim summary written to {summary}")


@pytest.fixture(scope="session")
def profile(pytestconfig):
    from harness import profiles

    return profiles.get(pytestconfig.getoption("--profile"))


@pytest.fixture(scope="session")
def seed(pytestconfig) -> int:
    """``--seed``: the models' seed (masks, initialisations, batch orders, random sets), not the data's."""
    return pytestconfig.getoption("--seed")


@pytest.fixture(scope="session")
def device(pytestconfig):
    import torch

    chosen = pytestconfig.getoption("--device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if chosen.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda given but no CUDA device is visible")
    return chosen


@pytest.fixture(scope="session")
def store(pytestconfig):
    from harness.store import Store

    return Store(pytestconfig.getoption("--store"))


@pytest.fixture(scope="session")
def reports_dir(pytestconfig) -> Path:
    path = Path(pytestconfig.getoption("--reports-dir"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def baseline(pytestconfig):
    path = pytestconfig.getoption("--baseline")
    if path is None or pytestconfig.getoption("--update-baseline"):
        return None
    if not Path(path).exists():
        raise pytest.UsageError(f"--baseline {path} does not exist; write one with --update-baseline")
    return json.loads(Path(path).read_text())


@pytest.fixture
def conclude(request, reports_dir, baseline, pytestconfig, seed):
    """Write a case's report, then end the test as its verdict says (module docstring)."""
    from harness import report
    from harness.verdict import INCONCLUSIVE, REFUTED, SUPPORTED

    started = time.perf_counter()

    def finish(result, figures=None, tables=None):
        result.seed = seed
        if not result.seconds:
            result.seconds = time.perf_counter() - started
        path = report.write_case_report(result, reports_dir, figures, tables)
        if baseline is not None:
            drifts = report.compare_to_baseline(result, baseline)
            if drifts:
                pytest.fail(f"regression against the baseline:\n{report.format_drifts(drifts)}\n"
                            f"report: {path}", pytrace=False)
        if result.control_verdict == SUPPORTED:
            pytest.fail(f"the test cannot tell these apart: its negative control ({result.control.destroyed}) is "
                        f"supported too, {result.control.statistic}\n{result.message()}\nreport: {path}",
                        pytrace=False)
        if result.verdict == REFUTED:
            known = baseline is not None and baseline.get("cases", {}).get(result.key, {}).get("verdict") == REFUTED
            if known:
                pytest.xfail(f"refuted, as recorded in the baseline: {result.message()}")
            pytest.fail(f"{result.message()}\nreport: {path}", pytrace=False)
        if result.verdict == INCONCLUSIVE:
            if pytestconfig.getoption("--inconclusive") == "fail":
                pytest.fail(f"{result.message()}\nreport: {path}", pytrace=False)
            pytest.xfail(result.message())
        return result

    return finish
