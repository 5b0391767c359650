"""The suite as a pytest plugin: options, fixtures, markers, hypothesis profiles and the summary.

Installed with the package, it is registered through the ``pytest11`` entry point
(``memsuite``), so any project that installs the suite writes claim tests with the same
fixtures (``profile``, ``seed``, ``device``, ``store``, ``reports_dir``, ``baseline``,
``conclude``) and options, without copying anything.

How a claim test ends (see README, "Verdicts"), through ``conclude``:

- supported    -> passes;
- refuted      -> fails with the figures, unless ``--baseline`` holds the same refuted
                  verdict for the case (a known result): then it is an xfail, so a regression
                  run fails only on change;
- inconclusive -> xfail with what would decide it (models per arm, or more points)
                  (``--inconclusive=fail`` makes it fail);
- any drift from ``--baseline`` beyond the statistics' own intervals -> fails with the diff;
- a supported negative control (the same pipeline with the claim's effect destroyed) -> fails,
  whatever the verdict: the test cannot tell the claim's effect from its absence.

A *claims run* starts by clearing what an earlier run wrote into the reports folder and ends
by writing ``SUMMARY.md`` there. Which runs are claims runs is the ini option
``memsuite_claim_paths``: a run whose arguments name one of these paths (empty, the default:
every run). The reports folder defaults to ``memsuite_reports_dir`` (``reports``) under
pytest's root folder, so it does not move with the working directory.

A test module that defines ``cases(profile)`` and a test taking ``case`` gets one test per case,
with the case's ``id`` as its test id.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

PROFILE_NAMES = ("smoke", "default", "paper")
EXECUTORS = ("local", "ray")


def pytest_addoption(parser):
    group = parser.getgroup("memsuite", "memorization claim suite")
    group.addoption("--profile", default=os.environ.get("MEMSUITE_PROFILE", "default"),
                    choices=list(PROFILE_NAMES),
                    help="budget of the claims: smoke (CI, minutes), default (laptop CPU, ~20 min "
                         "on 2 cores), paper (the papers' scale, for a GPU)")
    group.addoption("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    group.addoption("--store", default=None,
                    help="result store folder (default: $MEMSUITE_STORE or ~/.cache/memsuite)")
    group.addoption("--reports-dir", default=None,
                    help="where reports are written (default: the ini value memsuite_reports_dir, 'reports', "
                         "under pytest's root folder)")
    group.addoption("--baseline", default=None, help="regression baseline JSON to compare every case with")
    group.addoption("--update-baseline", action="store_true",
                    help="rewrite --baseline from this run's results at the end of the session")
    group.addoption("--inconclusive", default="xfail", choices=["xfail", "fail"],
                    help="how an inconclusive verdict ends (never a silent pass)")
    group.addoption("--seed", default=0, type=int,
                    help="seed of every mask draw, training seed and random selection (not of the data): "
                         "rerun with another to see whether a verdict survives other models (default 0)")
    group.addoption("--executor", default="local", choices=list(EXECUTORS),
                    help="where a run's chunks train: local (this process and its xdist siblings) or ray")
    group.addoption("--ray-address", default=None, help="Ray cluster to join with --executor ray (default: a local one)")
    parser.addini("memsuite_reports_dir", "default --reports-dir, relative to pytest's root folder", default="reports")
    parser.addini("memsuite_claim_paths", "paths whose runs are claims runs (clear old reports, write the summary); "
                                          "empty: every run", type="linelist", default=[])


def reports_dir_of(config) -> Path:
    """``--reports-dir``, else ``memsuite_reports_dir`` under the root folder."""
    chosen = config.getoption("--reports-dir")
    if chosen:
        return Path(chosen)
    return Path(config.rootpath) / config.getini("memsuite_reports_dir")


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _runs_claims(config) -> bool:
    paths = config.getini("memsuite_claim_paths")
    return not paths or any(path in str(arg) for arg in config.args for path in paths)


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
    _register_hypothesis_profiles(config.getoption("--profile"))
    if config.getoption("--store"):
        # Everything keyed beside the runs (e.g. cached image embeddings) follows --store.
        os.environ["MEMSUITE_STORE"] = str(Path(config.getoption("--store")).resolve())
    if config.getoption("--update-baseline") and not config.getoption("--baseline"):
        raise pytest.UsageError("--update-baseline needs --baseline PATH")
    _configure_executor(config)
    if not _is_worker(config) and _runs_claims(config):
        # A claims run writes a fresh report set; only what an earlier run wrote is removed.
        from harness.report import clear_previous_reports

        clear_previous_reports(reports_dir_of(config))


def _register_hypothesis_profiles(chosen: str) -> None:
    """Hypothesis settings profiles named like the suite's, so ``--profile`` also sets how many
    examples property tests draw."""
    from hypothesis import HealthCheck, settings

    from harness import profiles

    for profile in profiles.PROFILES.values():
        settings.register_profile(profile.name, max_examples=profile.hypothesis_examples,
                                  deadline=None, derandomize=True, print_blob=True,
                                  suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(chosen)


def _configure_executor(config) -> None:
    """``--executor`` and ``--ray-address`` set the process-wide executor (``harness.executors``)."""
    executor, address = config.getoption("--executor"), config.getoption("--ray-address")
    if address and executor != "ray":
        raise pytest.UsageError("--ray-address needs --executor ray")
    try:
        from harness import executors
    except ModuleNotFoundError as missing:
        if missing.name != "harness.executors":
            raise
        if executor != "local":
            raise pytest.UsageError(f"--executor {executor}: this installation has no harness.executors")
        return
    try:
        executors.configure(executor, address)
    except (ImportError, ValueError, RuntimeError) as problem:
        raise pytest.UsageError(f"--executor {executor}: {problem}") from problem


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
    reports = reports_dir_of(session.config)
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
        from harness.runner import verdict_line

        for result in report.load_results(reports):
            terminal.write_line(f"memsuite: {verdict_line(result)}")
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
    path = reports_dir_of(pytestconfig)
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
