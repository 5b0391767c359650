"""A claim on one's own data and model: ``run(claim, dataset, family, ...) -> ClaimResult``.

Every claim's study (``harness.claims.<claim>.study``) takes a case (a data set by name, a
family, a sampling rate) and a profile. :func:`study` hands it one's own: the data set is
registered by its name (``harness.experiments.register_dataset``), the family is a
:class:`harness.model_family.ModelFamily`, any spec of the training path, or one of the suite's
family names (``ridge``, ``mlp``, ``cnn``: the profile's), and the rate is the one the claim's
own cases use (:data:`CLAIMS`). The profile still sets every count (models, LOO targets,
bootstraps). :func:`run` writes the case report (JSON, Markdown, plots) where asked;
:func:`claim` gives one claim's ``run(dataset, family, profile=..., store=..., device=...)``.

Two claims do not take one data set and one family. mem-gen-anticorrelated correlates
memorization with test accuracy across configurations: on one's own data it takes a list of at
least ``MIN_CONFIGURATIONS`` (5) families of one's own (variants of one's model and training),
one configuration each (``harness.claims.mem_gen_anticorrelated.own_configurations``), and
refuses one family with that reason. subpopulations-stable re-embeds the suite's image data
sets; it is listed, and refused by :func:`study` with that reason. sampling-rate-bias gives a
family of one's own the suite MLP's budget of models per rate
(``harness.profiles.OWN_FAMILY_RATE_BUDGET``), stated in its report.

The store says which runs a study reused: every run the study opens is recorded with the
models it lacked at that moment (:class:`RecordingStore`), and the result's notes name the runs
reused whole and those trained, so changing one family's model shows as that family's runs
trained and every other run reused.
"""

from __future__ import annotations

import importlib
import inspect
import re
import time
from dataclasses import dataclass
from pathlib import Path

from harness import profiles as profiles_module
from harness.profiles import FZ20_RATE, Profile
from harness.store import Run, Store


@dataclass(frozen=True)
class ClaimEntry:
    """A claim of the suite: its module under ``harness.claims``, the sampling rate its cases use
    (None: exact LOO or the claim's own design), why it cannot run on one's own data (if so), and
    whether it takes a list of families, one configuration each, in place of one."""

    module: str
    rate: float | None = None
    own_data: str = ""
    across_configurations: bool = False

    def load(self):
        return importlib.import_module(f"harness.claims.{self.module}")

    @property
    def sentence(self) -> str:
        """The claim in one sentence: the first of its module docstring, after ``id (source):``."""
        paragraph = " ".join(inspect.getdoc(self.load()).split("\n\n")[0].split())
        statement = re.sub(r":\w+:`([^`]*)`", r"\1", paragraph.split("): ", 1)[-1]).replace("``", "")
        # A sentence ends at a full stop before a capital, not at "e.g. r".
        return re.split(r"(?<=\.)\s+(?=[A-Z])", statement)[0]


CLAIMS = {
    "approx-overestimates": ClaimEntry("approx_overestimates", FZ20_RATE),
    "error-is-subpopulation": ClaimEntry("error_is_subpopulation", FZ20_RATE),
    "fractional-definition": ClaimEntry("fractional_definition"),
    "fz-long-tail": ClaimEntry("fz_long_tail"),
    "fz-marginal-utility": ClaimEntry("fz_marginal_utility", FZ20_RATE),
    "grouped-leave-out": ClaimEntry("grouped_leave_out"),
    "leakage": ClaimEntry("leakage", FZ20_RATE),
    "mem-gen-anticorrelated": ClaimEntry("mem_gen_anticorrelated", across_configurations=True),
    "removal-harmless": ClaimEntry("removal_harmless"),
    "removal-shifts-distribution": ClaimEntry("removal_shifts_distribution", FZ20_RATE),
    "sampling-rate-bias": ClaimEntry("sampling_rate_bias"),
    "subpopulations-stable": ClaimEntry("subpopulations_stable", own_data=(
        "it re-embeds the suite's image data sets with other embedding networks")),
    "threshold-dependence": ClaimEntry("threshold_dependence", FZ20_RATE),
}


def entry(claim_id: str) -> ClaimEntry:
    if claim_id not in CLAIMS:
        raise ValueError(f"unknown claim {claim_id!r}; known: {', '.join(CLAIMS)}")
    return CLAIMS[claim_id]


class RecordingStore(Store):
    """A :class:`Store` that records each run opened and the models it lacked then (module docstring)."""

    def __init__(self, root):
        super().__init__(root)
        self.opened: dict[str, tuple[Run, int]] = {}

    def open(self, config: dict, masks, schema) -> Run:
        run = super().open(config, masks, schema)
        self.opened.setdefault(run.key, (run, len(run.missing())))
        return run

    def reuse_notes(self) -> list[str]:
        """Which runs were reused whole and which trained models, in words."""
        def label(run: Run) -> str:
            return f"{run.key} ({run.config['spec']['family']}, {run.n_models} models)"

        reused = [label(run) for run, missing in self.opened.values() if missing == 0]
        trained = [f"{label(run)}: {missing} trained" for run, missing in self.opened.values() if missing]
        return [f"store {self.root}: {len(reused)} run(s) reused" + (f" ({'; '.join(reused)})" if reused else "")
                + f", {len(trained)} run(s) trained" + (f" ({'; '.join(trained)})" if trained else "")]


def _profile(profile) -> Profile:
    return profile if isinstance(profile, Profile) else profiles_module.get(profile)


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def study(claim_id: str, dataset, family, profile="default", store=None, device: str | None = None, seed: int = 0,
          rate: float | None = ...):
    """The claim's study on ``dataset`` (a ``harness.data.Dataset``) with ``family``: a
    ``harness.verdict.CaseReport`` (the result, figures, tables), the runs reused or trained
    among its notes. ``rate`` defaults to the claim's own (:data:`CLAIMS`)."""
    from harness.experiments import Case, register_dataset
    from harness.verdict import CaseReport

    chosen = entry(claim_id)
    if chosen.own_data:
        raise ValueError(f"{claim_id} does not run on one data set and one family: {chosen.own_data}")
    several = isinstance(family, (list, tuple))
    if several and not chosen.across_configurations:
        raise ValueError(f"{claim_id} takes one family, got a list of {len(family)}")
    data = register_dataset(dataset)
    if chosen.across_configurations:
        # One family alone is refused there, with the reason.
        case = _grid(claim_id, data, family if several else [family], _profile(profile))
    else:
        case = Case(data, family, chosen.rate if rate is ... else rate)
    root = store.root if isinstance(store, Store) else store
    recording = RecordingStore(root if root is not None else Store().root)
    started = time.perf_counter()
    result, figures, tables = chosen.load().study(case, _profile(profile), recording, _device(device), seed)
    result.seed = seed
    result.seconds = result.seconds or time.perf_counter() - started
    result.notes = [*result.notes, *recording.reuse_notes()]
    return CaseReport(result, figures, tables)


def _grid(claim_id: str, data: str, families, profile: Profile):
    """mem-gen-anticorrelated's one case: each of ``families`` a configuration on ``data``."""
    from harness.claims.mem_gen_anticorrelated import Grid, own_configurations
    from harness.experiments import Case

    cases = [Case(data, family) for family in families]
    labels = [case.family for case in cases]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"{claim_id}: each configuration needs its own family name (ModelFamily(..., name=...)); "
                         f"{', '.join(repeated)} named more than once")
    return Grid(tuple(own_configurations(data, {case.family: case.spec(profile) for case in cases})))


def run(claim_id: str, dataset, family, profile="default", store=None, device: str | None = None, seed: int = 0,
        reports_dir=None, rate: float | None = ...):
    """:func:`study`'s ``ClaimResult``, its report written under ``reports_dir`` when given."""
    result, figures, tables = study(claim_id, dataset, family, profile, store, device, seed, rate)
    if reports_dir is not None:
        from harness.report import write_case_report

        write_case_report(result, Path(reports_dir), figures, tables)
    else:
        import matplotlib.pyplot as plt

        for figure in figures.values():
            plt.close(figure)
    return result


def claim(claim_id: str):
    """``run(dataset, family, profile=..., store=..., device=..., seed=..., reports_dir=...)`` for one claim."""
    entry(claim_id)

    def run_claim(dataset, family, profile="default", store=None, device=None, seed=0, reports_dir=None):
        return run(claim_id, dataset, family, profile, store, device, seed, reports_dir)

    run_claim.__name__ = claim_id.replace("-", "_")
    run_claim.__doc__ = f"{claim_id}: {entry(claim_id).sentence}"
    return run_claim


def verdict_line(result) -> str:
    """One line per case: ``claim/case: VERDICT, decisive statistic (the threshold)``."""
    return (f"{result.key}: {result.verdict.upper()}, {result.decisive} "
            f"(the claim holds {result.threshold})")
