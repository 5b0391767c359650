"""Reports of claim tests, their summary, and regression against a stored baseline.

Every case writes its own files, so pytest-xdist workers share nothing:

    reports_dir/<claim>/<case>.json        result.to_dict() plus "figures" {name: PNG path}
    reports_dir/<claim>/<case>.md          readable report embedding the PNGs
    reports_dir/<claim>/<case>-<fig>.png   one per figure

:func:`write_summary` then assembles ``SUMMARY.md`` and ``summary.json`` from those files.

Regression: a baseline keeps every case's verdict and statistics. A statistic has drifted
when two estimates of the same quantity differ by more than their intervals explain,

    |new - old| > tol,   tol = sqrt(h_old^2 + h_new^2),   h = (upper - lower) / 2,

(two independent estimates with 95 % intervals differ by more than that with roughly 5 %
probability). Deterministic figures (zero-width intervals on both sides) use
tol = 1e-9 * max(1, |old|). A changed verdict is always a drift, and so is a statistic
the baseline has but the new result lacks; statistics new since the baseline are not.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written headless, also inside pytest-xdist workers

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.stats import holm  # noqa: E402
from harness.verdict import INCONCLUSIVE, REFUTED, SUPPORTED, ClaimResult, Statistic, format_number  # noqa: E402

FIGURE_DPI = 110
DRIFT_KINDS = ("verdict", "statistic", "missing")
_HAS_TABULATE = importlib.util.find_spec("tabulate") is not None


def safe_name(name: str) -> str:
    """``name`` with every character outside [A-Za-z0-9._-] replaced by '_', usable as a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if not safe.strip("."):
        raise ValueError(f"{name!r} cannot be turned into a file name")
    return safe


# ----------------------------------------------------------------------------- Markdown

def _cell(value) -> str:
    text = format_number(value) if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _dataframe_markdown(table: pd.DataFrame) -> str:
    # A meaningful index becomes a column, so both renderers show the same thing.
    frame = table if isinstance(table.index, pd.RangeIndex) else table.reset_index()
    if _HAS_TABULATE:
        return frame.to_markdown(index=False, floatfmt=".3g")
    rows = frame.to_dict(orient="split")["data"]  # native Python scalars, so floats get format_number
    return _markdown_table([str(c) for c in frame.columns], rows)


def _statistics_table(statistics: list[Statistic]) -> str:
    return _markdown_table(
        ["statistic", "estimate", "interval", "n", "note"],
        [[s.name, s.estimate, f"[{format_number(s.lower)}, {format_number(s.upper)}]", f"{s.n} {s.unit}", s.note]
         for s in statistics],
    )


def _case_markdown(result: ClaimResult, figure_paths: dict[str, str], tables: dict[str, pd.DataFrame]) -> str:
    threshold = result.threshold
    lines = [
        f"# {result.claim}: {result.case}",
        "",
        f"**Verdict: {result.verdict.upper()}**",
        "",
        result.message(),
        "",
        f"Dataset: {result.dataset}; models: {result.models_trained}; seed: {result.seed}; "
        f"time: {result.seconds:.1f} s",
        "",
        "## Decisive statistic",
        "",
        _statistics_table([result.decisive]),
        "",
        f"Threshold: the claim holds when {result.decisive.name} is {threshold}. Source: {threshold.source}",
    ]
    if result.control is not None:
        lines += ["", "## Negative control", "",
                  f"The same pipeline with the claim's effect destroyed: {result.control.destroyed}. "
                  f"**Control verdict: {result.control_verdict.upper()}** (it must not be supported).", "",
                  _statistics_table([result.control.statistic])]
    if result.paper:
        lines += ["", f"Paper's figure: {result.paper_text()}"]
    if result.power[1]:
        lines += ["", f"What would decide it: {result.power[1]}"]
    lines += ["", "## All statistics", "", _statistics_table(result.all_statistics())]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    if figure_paths:
        lines += ["", "## Figures"]
        for name, path in figure_paths.items():
            lines += ["", f"### {name}", "", f"![{name}]({path})"]
    if tables:
        lines += ["", "## Tables"]
        for name, table in tables.items():
            lines += ["", f"### {name}", "", _dataframe_markdown(table)]
    versions = ", ".join(f"{package} {version}" for package, version in result.versions.items())
    lines += ["", f"Versions: {versions}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- case reports

def write_case_report(result: ClaimResult, reports_dir: Path, figures: dict[str, Figure] | None = None,
                      tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write the case's JSON, Markdown and PNG files under ``reports_dir/<claim>/``; return the Markdown path.

    The figures are closed afterwards, also when writing fails.
    """
    figures, tables = figures or {}, tables or {}
    try:
        claim_dir = Path(reports_dir) / safe_name(result.claim)
        claim_dir.mkdir(parents=True, exist_ok=True)
        case = safe_name(result.case)
        figure_paths: dict[str, str] = {}  # relative to claim_dir, so the Markdown embeds them as they are
        for name, figure in figures.items():
            path = f"{case}-{safe_name(name)}.png"
            if path in figure_paths.values():
                raise ValueError(f"figure names {sorted(figures)} collide once made file-safe")
            figure.savefig(claim_dir / path, dpi=FIGURE_DPI, bbox_inches="tight")
            figure_paths[name] = path
        record = result.to_dict() | {"figures": figure_paths}
        (claim_dir / f"{case}.json").write_text(json.dumps(record, indent=2) + "\n")
        markdown_path = claim_dir / f"{case}.md"
        markdown_path.write_text(_case_markdown(result, figure_paths, tables))
        return markdown_path
    finally:
        for figure in figures.values():
            plt.close(figure)


_REPORT_SUFFIXES = frozenset({".json", ".md", ".png"})


def clear_previous_reports(reports_dir: Path) -> list[Path]:
    """Remove what an earlier claims run wrote into ``reports_dir``, and nothing else.

    A folder goes only if it holds nothing but case reports (JSON with a claim and a verdict,
    their Markdown and PNG files); ``SUMMARY.md`` and ``summary.json`` go. Anything else in
    ``reports_dir`` stays, so pointing ``--reports-dir`` at a folder of one's own loses nothing.
    Returns the removed paths.
    """
    removed = []
    for child in sorted(Path(reports_dir).glob("*")):
        if child.is_dir() and _holds_only_case_reports(child):
            shutil.rmtree(child)
            removed.append(child)
        elif child.is_file() and child.name in ("SUMMARY.md", "summary.json"):
            child.unlink()
            removed.append(child)
    return removed


def _holds_only_case_reports(folder: Path) -> bool:
    files = list(folder.iterdir())
    if not files or any(not f.is_file() or f.suffix not in _REPORT_SUFFIXES for f in files):
        return False
    for path in (f for f in files if f.suffix == ".json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
        if not (isinstance(record, dict) and {"claim", "case", "verdict"} <= set(record)):
            return False
    return any(f.suffix == ".json" for f in files)


def _read_case_reports(reports_dir: Path) -> list[tuple[dict, ClaimResult]]:
    """Each case JSON as stored and as a ClaimResult, sorted by claim then case."""
    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        raise ValueError(f"reports directory {reports_dir} does not exist")
    reports = []
    for path in reports_dir.glob("*/*.json"):
        try:
            record = json.loads(path.read_text())
            reports.append((record, ClaimResult.from_dict(record)))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a case report: {error}") from error
    return sorted(reports, key=lambda report: (report[1].claim, report[1].case))


def load_results(reports_dir: Path) -> list[ClaimResult]:
    """Every case report ``reports_dir/<claim>/<case>.json``, sorted by claim then case."""
    return [result for _, result in _read_case_reports(reports_dir)]


def family_rows(results: list[ClaimResult], alpha: float = 0.025) -> list[list]:
    """Per claim: its cases, how many are supported, and which survive Holm's rule at ``alpha``
    (one-sided 2.5 %, the level of each case's own verdict, so a family of one survives exactly
    when it is supported)."""
    rows = []
    for claim in sorted({result.claim for result in results}):
        cases = [result for result in results if result.claim == claim]
        survive = holm([result.p_value for result in cases], alpha)
        names = [result.case for result, kept in zip(cases, survive) if kept]
        rows.append([claim, len(cases), sum(result.verdict == SUPPORTED for result in cases), len(names),
                     "; ".join(names) or "none"])
    return rows


def is_real_data(dataset: str) -> bool:
    """A case on real data: any of its data sets is not one of the synthetic generator's."""
    return any(not name.strip().startswith("synthetic") for name in dataset.split(","))


def paper_rows(results: list[ClaimResult]) -> list[list]:
    """Per claim: the paper's figure and source, and the decisive statistic of each real-data case."""
    rows = []
    for claim in sorted({result.claim for result in results}):
        cases = [result for result in results if result.claim == claim]
        paper = next((result.paper for result in cases if result.paper), {})
        figure = f"{paper.get('figure', '')} ({paper.get('source', '')})" if paper else "not stated"
        real = [result for result in cases if is_real_data(result.dataset)]
        suite = "<br>".join(
            f"{result.case}: {result.decisive.name} = {format_number(result.decisive.estimate)} "
            f"[{format_number(result.decisive.lower)}, {format_number(result.decisive.upper)}], {result.verdict}"
            for result in real) or "no case on real data in this run"
        rows.append([claim, figure, suite])
    return rows


def _control_cell(result: ClaimResult) -> str:
    if result.control is None:
        return "none"
    c = result.control.statistic
    return f"{result.control_verdict} {format_number(c.estimate)} [{format_number(c.lower)}, {format_number(c.upper)}]"


def write_summary(reports_dir: Path) -> Path:
    """Write ``SUMMARY.md`` (counts per verdict, one row per case) and ``summary.json``.

    Returns the path of ``SUMMARY.md``.
    """
    reports_dir = Path(reports_dir)
    reports = _read_case_reports(reports_dir)
    records = [record for record, _ in reports]
    results = [result for _, result in reports]
    counts = Counter(result.verdict for result in results)
    rows = []
    for result in results:
        d = result.decisive
        link = f"{safe_name(result.claim)}/{safe_name(result.case)}.md"
        rows.append([
            result.claim, result.case, result.dataset, result.verdict, d.name,
            f"{format_number(d.estimate)} [{format_number(d.lower)}, {format_number(d.upper)}]",
            f"{d.n} {d.unit}", str(result.threshold), _control_cell(result), f"[report]({link})",
        ])
    header = ["claim", "case", "dataset", "verdict", "decisive statistic", "estimate [lower, upper]", "n",
              "threshold", "control", "report"]
    counts_text = ", ".join(f"{counts[verdict]} {verdict}" for verdict in (SUPPORTED, REFUTED, INCONCLUSIVE))
    markdown = "\n".join([
        "# Claim test summary",
        "",
        f"{len(results)} cases: {counts_text}.",
        "",
        _markdown_table(header, rows),
        "",
        "The control column is each case's negative control (the same pipeline with the claim's effect "
        "destroyed), decided against the same threshold; a supported control fails its case.",
        "",
        "## Each claim's cases as a family (Holm)",
        "",
        "Each case's verdict is at the 95 % level on its own. Read together, a claim's cases are a family: "
        "a case survives when Holm's step-down rule, family-wise at the level of each verdict (one-sided "
        "2.5 %), rejects 'the claim does not hold' for it (p-values from each decisive interval's half on "
        "the threshold's side, read as normal).",
        "",
        _markdown_table(["claim", "cases", "supported", "survive Holm", "cases that survive"], family_rows(results)),
        "",
        "## The papers beside the suite, on real data",
        "",
        "Each claim's headline figure as the paper reports it, beside the suite's decisive statistic on every "
        "case whose data are real (not the synthetic generator), with its 95 % interval and verdict. The "
        "decisive statistic is the claim's sentence as the suite tests it, not always the figure the paper "
        "printed; the case's report gives both.",
        "",
        _markdown_table(["claim", "the paper", "the suite on real data"], paper_rows(results)),
        "",
    ])
    summary_path = reports_dir / "SUMMARY.md"
    summary_path.write_text(markdown)
    (reports_dir / "summary.json").write_text(json.dumps(records, indent=2) + "\n")
    return summary_path


# ----------------------------------------------------------------------------- baseline

@dataclass(frozen=True)
class Drift:
    """One difference between a result and the baseline that its intervals do not explain."""

    case: str
    statistic: str
    old: float | str
    new: float | str
    tolerance: float | None
    kind: str

    def __post_init__(self):
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"kind must be one of {DRIFT_KINDS}, got {self.kind!r}")

    def __str__(self) -> str:
        if self.kind == "verdict":
            what = "control verdict" if self.statistic.startswith("control: ") else "verdict"
            return f"{self.case}: {what} changed {self.old} -> {self.new}"
        if self.kind == "missing":
            return f"{self.case}: statistic {self.statistic} (was {format_number(self.old)}) is missing now"
        return (f"{self.case}: statistic {self.statistic} moved {format_number(self.old)} -> "
                f"{format_number(self.new)} (tolerance {format_number(self.tolerance)})")


def baseline_from_results(results: list[ClaimResult]) -> dict:
    """The verdict and every statistic of each case, keyed ``claim/case``, ready for ``json.dump``."""
    cases = {}
    for result in results:
        if result.key in cases:
            raise ValueError(f"{result.key} appears twice among the results")
        cases[result.key] = {
            "verdict": result.verdict,
            "statistics": {s.name: _baseline_figures(s) for s in result.all_statistics()},
        }
        if result.control is not None:
            cases[result.key]["control"] = _baseline_figures(result.control.statistic) | {
                "name": result.control.statistic.name, "verdict": result.control_verdict}
    return {"cases": cases, "written": datetime.date.today().isoformat()}


def _baseline_figures(statistic: Statistic) -> dict:
    return {"estimate": statistic.estimate, "lower": statistic.lower, "upper": statistic.upper, "n": statistic.n}


def drift_tolerance(old: dict, new: Statistic) -> float:
    """How far two estimates may differ before it counts as drift (module docstring)."""
    old_half_width = (old["upper"] - old["lower"]) / 2
    if old_half_width == 0 and new.half_width == 0:
        return 1e-9 * max(1.0, abs(old["estimate"]))
    return math.hypot(old_half_width, new.half_width)


def _has_moved(old_estimate: float, new_estimate: float, tolerance: float) -> bool:
    if math.isnan(old_estimate) or math.isnan(new_estimate):
        return math.isnan(old_estimate) != math.isnan(new_estimate)
    return abs(new_estimate - old_estimate) > tolerance


def compare_to_baseline(result: ClaimResult, baseline: dict) -> list[Drift]:
    """Drifts of ``result`` from its case in ``baseline``; a case the baseline lacks has none."""
    if "cases" not in baseline:
        raise ValueError("a baseline is a dict with a 'cases' entry, as made by baseline_from_results")
    old_case = baseline["cases"].get(result.key)
    if old_case is None:
        return []
    drifts = []
    if old_case["verdict"] != result.verdict:
        drifts.append(Drift(result.key, result.decisive.name, old_case["verdict"], result.verdict,
                            tolerance=None, kind="verdict"))
    now = {s.name: s for s in result.all_statistics()}
    old_control = old_case.get("control")
    if old_control is not None:
        name = f"control: {old_control['name']}"
        if result.control is None:
            drifts.append(Drift(result.key, name, old_control["estimate"], "missing", None, "missing"))
        else:
            if old_control["verdict"] != result.control_verdict:
                drifts.append(Drift(result.key, name, old_control["verdict"], result.control_verdict, None,
                                    "verdict"))
            now[name] = result.control.statistic
            old_case = old_case | {"statistics": old_case["statistics"] | {name: old_control}}
    for name, old in old_case["statistics"].items():
        if name not in now:
            drifts.append(Drift(result.key, name, old["estimate"], "missing", None, "missing"))
            continue
        tolerance = drift_tolerance(old, now[name])
        if _has_moved(old["estimate"], now[name].estimate, tolerance):
            drifts.append(Drift(result.key, name, old["estimate"], now[name].estimate, tolerance, "statistic"))
    return drifts


def format_drifts(drifts: list[Drift]) -> str:
    """A readable multi-line list of drifts, grouped by case."""
    if not drifts:
        return "No drift from the baseline."
    lines = [f"{len(drifts)} drift(s) from the baseline:"]
    lines += [f"  - {drift}" for drift in sorted(drifts, key=lambda drift: drift.case)]
    return "\n".join(lines)
