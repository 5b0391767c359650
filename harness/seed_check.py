"""Does a verdict survive other models? Every case rerun under several ``--seed`` values.

    python -m harness.seed_check [--profile smoke] [--seeds 8] [--out DIR] [-k EXPR] [--workers N]

Runs ``pytest claims/`` once per seed 0 .. seeds-1 (other masks, initialisations, batch orders and
random sets; the same data), each into ``DIR/seed-<s>``, then reads the reports back. Per case:

- **flip**: supported under one seed and refuted under another (never acceptable: a verdict
  that flips with the seed alone was never evidence);
- **spread ratio**: the standard deviation of the decisive estimate across seeds over the
  interval's implied standard deviation (mean half width / 1.96), for the statistic decisive
  under most seeds among those with an interval (``statistic``: a claim whose parts are combined
  decides on the part nearest to failing, which can change with the seed), both on the scale the interval
  was built on (``Statistic.on_interval_scale``: a correlation's Fisher z, the mean square under
  a signed root), where a half width reads as 1.96 standard deviations. The interval holds the
  model-level noise the seeds show when the ratio is at most 1;
- **the ratio's 95 % interval**: with n seeds, (n - 1) s^2 / sigma^2 is chi-square on n - 1
  degrees of freedom for normal estimates, so the ratio's interval is
      [ratio * sqrt((n - 1) / chi2_0.975), ratio * sqrt((n - 1) / chi2_0.025)]
  (8 seeds: 0.66 to 2.04 times the ratio), the implied standard deviation held fixed. A ratio
  above 1 whose interval reaches below 1 is what a calibrated interval gives about half the time;
  one whose interval lies above 1 is an interval too narrow for the seeds;
- **seeds covering the mean**: under how many seeds the interval holds the mean of the estimates
  across seeds (on the interval's scale), a direct reading of the coverage that needs no normality
  (the mean is itself a little noisy, so a calibrated interval covers it slightly more than 95 %
  of the time: about 0.96 with 8 seeds);
- **controls supported**: under how many seeds the negative control came out supported (each
  such run already failed its case; an exactly null control does so 2.5 % of the time).

Prints a table (``--json``: one JSON object per case) and exits 1 if any case flips or has a
ratio above 1 (the ratio itself, the issue's criterion; the message gives each such ratio's interval).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import tempfile
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from harness.report import load_results
from harness.verdict import REFUTED, SUPPORTED, Statistic

Z = 1.959963984540054


def run_seeds(seeds: int, out: Path, profile: str, keyword: str | None, workers: int, store: str | None) -> None:
    for seed in range(seeds):
        command = [sys.executable, "-m", "pytest", "claims/", "--profile", profile, "--seed", str(seed),
                   "--reports-dir", str(out / f"seed-{seed}"), "-q", "-p", "no:cacheprovider", "-n", str(workers)]
        command += ["-k", keyword] if keyword else []
        command += ["--store", store] if store else []
        print(f"seed {seed}: {' '.join(command[2:])}", flush=True)
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def _part(name: str) -> str:
    """A statistic's name with its counts blanked: "share of singletons, 29 lowest minus 29 highest
    error" under one seed is "..., 31 lowest ..." under another (k follows the points selected)."""
    return re.sub(r"\d+(\.\d+)?", "#", name)


def _followed_statistic(results: list) -> tuple[str, list]:
    """The statistic decisive under most seeds, and its value under every seed. Where parts are
    combined (intersection-union), the part nearest to failing decides, and that can change with
    the seed; the spread compares one statistic across seeds, never one part's estimate with another's.
    A part that is missing (no interval: too few points in a bin) decides as undecidable, and has
    no spread to compare, so the count is over the decisive statistics with an interval, if any.
    Parts are matched on their names with the counts blanked (``_part``); where two statistics of a
    report match, the decisive one, else the name most common among the decisive ones, is taken."""
    with_interval = [r.decisive.name for r in results if all(map(math.isfinite, r.decisive.on_interval_scale()))]
    names = Counter(with_interval or [r.decisive.name for r in results])
    by_part = Counter()
    for name, count in names.items():
        by_part[_part(name)] += count
    part = by_part.most_common(1)[0][0]
    usual = max((name for name in names if _part(name) == part), key=names.__getitem__)

    def followed(result):
        matches = [s for s in result.all_statistics() if _part(s.name) == part]
        for preferred in (result.decisive.name, usual):
            if any(s.name == preferred for s in matches):
                return next(s for s in matches if s.name == preferred)
        return matches[0] if matches else Statistic(usual, math.nan, math.nan, math.nan, 0)

    return usual, [followed(r) for r in results]


def ratio_interval(ratio: float, seeds: int, level: float = 0.95) -> tuple[float, float]:
    """The spread ratio's interval from the chi-square law of a sample variance over ``seeds`` runs
    (module docstring); NaN where fewer than two seeds have an interval."""
    if seeds < 2 or not math.isfinite(ratio):
        return math.nan, math.nan
    tail = (1 - level) / 2
    upper_quantile, lower_quantile = scipy_stats.chi2.ppf([1 - tail, tail], seeds - 1)
    return ratio * math.sqrt((seeds - 1) / upper_quantile), ratio * math.sqrt((seeds - 1) / lower_quantile)


def summarise(out: Path) -> pd.DataFrame:
    """One row per case over the seeds found under ``out``: verdicts, flip, spread ratio."""
    runs = sorted(out.glob("seed-*"), key=lambda p: int(p.name.split("-")[1]))
    if not runs:
        raise ValueError(f"no seed-<s> report folders under {out}")
    by_case: dict[str, list] = {}
    for run in runs:
        for result in load_results(run):
            by_case.setdefault(result.key, []).append(result)
    rows = []
    for key, results in sorted(by_case.items()):
        name, followed = _followed_statistic(results)
        estimates, lowers, uppers = np.array([s.on_interval_scale() for s in followed]).T
        half_widths = (uppers - lowers) / 2
        verdicts = [r.verdict for r in results]
        finite = np.isfinite(estimates) & np.isfinite(half_widths)
        spread = float(np.std(estimates[finite], ddof=1)) if finite.sum() >= 2 else math.nan
        implied = float(np.mean(half_widths[finite]) / Z) if finite.any() else math.nan
        ratio = spread / implied if implied > 0 else math.nan
        ratio_lower, ratio_upper = ratio_interval(ratio, int(finite.sum()))
        mean = estimates[finite].mean() if finite.any() else math.nan
        rows.append({"case": key, "seeds": len(results),
                     "supported": verdicts.count(SUPPORTED), "refuted": verdicts.count(REFUTED),
                     "inconclusive": len(verdicts) - verdicts.count(SUPPORTED) - verdicts.count(REFUTED),
                     "flip": SUPPORTED in verdicts and REFUTED in verdicts,
                     "controls supported": sum(r.control_verdict == SUPPORTED for r in results),
                     "estimate sd across seeds": spread, "implied sd of the interval": implied,
                     "spread ratio": ratio, "ratio lower": ratio_lower, "ratio upper": ratio_upper,
                     "seeds covering the mean": int(((lowers <= mean) & (mean <= uppers))[finite].sum()),
                     "seeds with an interval": int(finite.sum()), "statistic": name})
    return pd.DataFrame(rows).set_index("case")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.seed_check", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke", choices=["smoke", "default", "paper"])
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0 .. N-1 (default 8)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "memsuite-seed-check"),
                        help="where each seed's reports go (DIR/seed-<s>)")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression selecting cases")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers per run")
    parser.add_argument("--store", default=None, help="result store (default: the suite's)")
    parser.add_argument("--summarise-only", action="store_true", help="read existing reports, run nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object per case")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be >= 2 to compare seeds, got {args.seeds}")
    out = Path(args.out)
    if not args.summarise_only:
        run_seeds(args.seeds, out, args.profile, args.keyword, args.workers, args.store)
    table = summarise(out)
    if args.json:
        print(json.dumps(table.reset_index().to_dict(orient="records"), indent=1))
    else:
        print(table.round(4).to_string())
    bad = table[table["flip"] | (table["spread ratio"] > 1)]
    if len(bad):
        # stderr, so that --json's stdout stays one JSON document
        cases = [f"{case} (ratio {row['spread ratio']:.2f} [{row['ratio lower']:.2f}, {row['ratio upper']:.2f}]"
                 f"{', flips' if row['flip'] else ''})" for case, row in bad.iterrows()]
        print(f"\n{len(bad)} case(s) flip between supported and refuted or spread more than their interval "
              f"implies: {'; '.join(cases)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
