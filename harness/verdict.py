"""Verdicts: one decisive statistic with its interval, compared to a threshold.

Every claim test reduces its evidence to a :class:`Statistic` (an estimate with an
interval [lower, upper]) and compares it to a :class:`Threshold` taken from the paper.
With ``direction = "above"`` the claim holds when the statistic exceeds ``value``:

    supported     if lower > value               (the whole interval on the claim's side)
    refuted       if upper < value               (the whole interval on the wrong side)
    inconclusive  otherwise                      (the interval holds or touches the threshold)

``direction = "below"`` mirrors it: supported if upper < value, refuted if lower > value.
An interval with a NaN bound is never decided (inconclusive).
A bound equal to the threshold does not exclude it: for a statistic with an atom at the
threshold (fractional-definition's FPR difference is exactly 0 in most resamples) an interval
ending there, such as [-0.03, 0], leaves the threshold possible and decides nothing; under the
old rule (refuted if upper <= value) 24 of 200 calibration intervals ending at 0 refuted the
claim while the truth was positive, none under this one.

A decisive statistic from a crossed bootstrap (``harness.stats.crossed_bootstrap``) keeps
its variance components, so an inconclusive result states what would decide it
(``harness.stats.power_statement``): the models per arm for 80 % power, or that more points,
not more models, are needed. An interval whose every resample equals the estimate, or whose
2.5 % and 97.5 % quantiles coincide, gets NaN bounds: the data leave nothing (or too little) to
resample, and no verdict rests on it.

A :class:`Control` is the claim's negative control: the same pipeline and threshold with
the thing the claim is about destroyed (scores shuffled among points, a random set in place of
the memorized one, ...). Where the claim's effect is absent the control's statistic sits at the
threshold's boundary, so it comes out supported only by chance (2.5 % at the one-sided level of
every verdict) or when the test responds to something other than the claim's effect. A
supported control fails its case: the test cannot tell the claim from its absence.

A :class:`ClaimResult` bundles the verdict with everything a report needs (further
statistics, the control, the paper's figure, cost, seed, notes, package versions) and
round-trips through JSON via :meth:`ClaimResult.to_dict` / :meth:`ClaimResult.from_dict`.
"""

from __future__ import annotations

import functools
import math
import importlib.metadata
import platform
from dataclasses import asdict, dataclass, field, fields
from typing import NamedTuple

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
DIRECTIONS = ("above", "below")

# Distributions whose versions are recorded with every result (pytest-memorization, this harness), so a
# report says what produced it.
_RECORDED_DISTRIBUTIONS = (
    "pytest-memorization", "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "matplotlib",
)

# Keys that to_dict or the report writer derive; from_dict accepts and ignores them.
_DERIVED_KEYS = frozenset({"verdict", "figures", "power", "models_per_arm_to_decide", "p_value"})
NOTHING_TO_RESAMPLE = ("every resample equals the estimate: the data leave nothing to resample (every count at 0 "
                       "or at its maximum), so no verdict rests on it")
TOO_LITTLE_TO_RESAMPLE = ("the interval has zero width (its 2.5 % and 97.5 % quantiles coincide: at least 95 % of "
                          "the resamples take one value): the data leave too little to resample, so no verdict rests "
                          "on it")


def format_number(x: float) -> str:
    """Three significant digits: the precision a verdict paragraph or table needs."""
    return f"{x:.3g}"


@dataclass(frozen=True)
class Statistic:
    """One figure with its interval, resting on ``n`` units (models or points)."""

    name: str
    estimate: float
    lower: float
    upper: float
    n: int
    unit: str = "models"
    note: str = ""
    # From a crossed bootstrap: {"var_points", "var_models", "models_per_arm", "scale"} and, where a
    # selection's variance was added, "var_selection" (harness.stats);
    # "scale" alone where the interval is the image of another's, "folded from" where it is D's under
    # |.| (``on_interval_scale``).
    components: dict = field(default_factory=dict)

    @classmethod
    def from_interval(cls, name: str, interval, unit: str = "points", note: str = "",
                      models_per_arm: dict | None = None) -> "Statistic":
        """The one way an interval (``harness.stats``) becomes a verdict statistic.

        A degenerate or zero-width crossed-bootstrap interval gets NaN bounds (module docstring); with
        ``models_per_arm`` its variance components are kept for the power statement.
        """
        from harness.stats import CrossedInterval

        lower, upper = interval.lower, interval.upper
        notes = [note] if note else []
        components = {}
        if isinstance(interval, CrossedInterval):
            if interval.degenerate:
                lower = upper = math.nan
                notes.append(NOTHING_TO_RESAMPLE)
            elif lower == upper:
                lower = upper = math.nan
                notes.append(TOO_LITTLE_TO_RESAMPLE)
            elif math.isnan(lower):
                notes.append(interval.method)
            if models_per_arm is not None and math.isfinite(interval.var_both):
                components = {"var_points": interval.var_points, "var_models": interval.var_models,
                              "models_per_arm": {arm: int(count) for arm, count in models_per_arm.items()},
                              "scale": interval.scale}
                if interval.var_selection:
                    components["var_selection"] = interval.var_selection
        return cls(name, interval.estimate, lower, upper, interval.n, unit, "; ".join(notes), components)

    def __post_init__(self):
        if not self.name:
            raise ValueError("a Statistic needs a non-empty name")
        # Claim tests pass numpy or torch scalars; plain floats keep results JSON-ready.
        for attribute in ("estimate", "lower", "upper"):
            object.__setattr__(self, attribute, float(getattr(self, attribute)))
        if self.lower > self.upper:
            raise ValueError(f"{self.name}: lower bound {self.lower} exceeds upper bound {self.upper}")
        if int(self.n) != self.n or self.n < 0:
            raise ValueError(f"{self.name}: n must be a non-negative integer, got {self.n!r}")
        object.__setattr__(self, "n", int(self.n))

    @property
    def half_width(self) -> float:
        return (self.upper - self.lower) / 2

    def on_interval_scale(self) -> tuple[float, float, float]:
        """(estimate, lower, upper) on the scale the interval was built on, where a half width reads
        as 1.96 standard deviations: a folded statistic's signed one (|D|, margin - |D|: D), mapped
        by ``harness.stats.TO_SCALE``."""
        from harness.stats import TO_SCALE

        estimate, lower, upper = self.components.get("folded from", (self.estimate, self.lower, self.upper))
        to_scale = TO_SCALE[self.components.get("scale", "identity")]
        return to_scale(estimate), to_scale(lower), to_scale(upper)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.name} = {format_number(self.estimate)} "
                f"[{format_number(self.lower)}, {format_number(self.upper)}] (n = {self.n} {self.unit})")


@dataclass(frozen=True)
class Threshold:
    """The value a statistic must pass for the claim to hold, and where that value comes from."""

    value: float
    direction: str
    source: str

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not self.source:
            raise ValueError("a Threshold needs a source: say where the value comes from")
        object.__setattr__(self, "value", float(self.value))

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.direction} {format_number(self.value)}"


@dataclass(frozen=True)
class Control:
    """A negative control (module docstring): its statistic, decided against the claim's threshold,
    and what was destroyed to make it (and why that makes it a control)."""

    statistic: Statistic
    destroyed: str

    def __post_init__(self):
        if not isinstance(self.statistic, Statistic):
            raise ValueError("a Control's statistic must be a Statistic")
        if not self.destroyed:
            raise ValueError("a Control must say what it destroyed")

    def as_dict(self) -> dict:
        return {"statistic": self.statistic.as_dict(), "destroyed": self.destroyed}

    @classmethod
    def from_dict(cls, d: dict) -> "Control":
        return cls(Statistic(**d["statistic"]), d["destroyed"])


@dataclass(frozen=True)
class Decision:
    """A claim's decision (``harness.claims``): its decisive statistic against its threshold,
    its negative control, and the parts or companions the decision computed on the way."""

    decisive: Statistic
    threshold: Threshold
    control: Control
    parts: list = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return decide(self.decisive, self.threshold)

    @property
    def control_verdict(self) -> str:
        return decide(self.control.statistic, self.threshold)


def decide(statistic: Statistic, threshold: Threshold) -> str:
    """SUPPORTED, REFUTED or INCONCLUSIVE by where the interval lies (module docstring)."""
    lower, upper, value = statistic.lower, statistic.upper, threshold.value
    if threshold.direction == "above":
        if lower > value:
            return SUPPORTED
        if upper < value:
            return REFUTED
    else:
        if upper < value:
            return SUPPORTED
        if lower > value:
            return REFUTED
    return INCONCLUSIVE


def intersection_union(parts: list[Statistic], threshold: Threshold) -> Statistic:
    """The decisive part of a claim made of parts that must all hold (each at the 95 % level, so
    no correction is needed): a refuted part if any, else a part without an interval (the claim
    cannot be decided without it), else the part nearest to failing."""
    if not parts:
        raise ValueError("intersection_union needs at least one part")
    refuted = [part for part in parts if decide(part, threshold) == REFUTED]
    if refuted:
        return refuted[0]
    missing = [part for part in parts if math.isnan(part.lower) or math.isnan(part.upper)]
    if missing:
        return missing[0]
    if threshold.direction == "above":
        return min(parts, key=lambda part: part.lower)
    return max(parts, key=lambda part: part.upper)


def absolute_value(signed: Statistic) -> Statistic:
    """|D| for a claim about a size whatever its sign ("changes", "agrees within"): the image of
    D's interval under the absolute value, [dist(0, [lower, upper]), max(|lower|, |upper|)], a
    95 % confidence set for |D| when [lower, upper] is one for D."""
    lower, upper = signed.lower, signed.upper
    nearest = 0.0 if lower <= 0.0 <= upper else min(abs(lower), abs(upper))
    return Statistic(f"|{signed.name}|", abs(signed.estimate), nearest, max(abs(lower), abs(upper)), signed.n,
                     unit=signed.unit, note=signed.note, components=_folded_from(signed))


def _folded_from(signed: Statistic) -> dict:
    """``signed``'s components with its own figures, which a fold under |.| cannot give back:
    D's interval is the one the bootstrap built (``Statistic.on_interval_scale``)."""
    return {**signed.components, "folded from": signed.components.get(
        "folded from", [signed.estimate, signed.lower, signed.upper])}


def margin_left(signed: Statistic, margin: float) -> Statistic:
    """margin - |D|, an equivalence part ("removes", "hardly at all") as a statistic above 0: its
    interval is the image of D's under |.| (:func:`absolute_value`), so it is above 0 exactly
    when the whole interval of D lies inside (-margin, margin)."""
    absolute = absolute_value(signed)
    return Statistic(f"{format_number(margin)} minus |{signed.name}|", margin - absolute.estimate,
                     margin - absolute.upper, margin - absolute.lower, signed.n, signed.unit,
                     "; ".join(filter(None, [signed.note, "above 0 when the whole interval lies within the margin"])),
                     _folded_from(signed))


def undecidable(name: str, reason: str, unit: str = "points") -> Statistic:
    """A statistic the data cannot provide (e.g. nothing selected): never decided."""
    return Statistic(name, math.nan, math.nan, math.nan, 0, unit, reason)


def power_of(statistic: Statistic, threshold: Threshold) -> tuple[dict | None, str]:
    """What would decide an inconclusive verdict: ``({arm: models}, sentence)`` from the
    statistic's variance components, ``(None, sentence)`` when more models cannot, and
    ``(None, "")`` when the verdict is decided."""
    from harness.stats import TO_SCALE, power_statement

    if decide(statistic, threshold) != INCONCLUSIVE:
        return None, ""
    if math.isnan(statistic.lower) or math.isnan(statistic.upper):
        return None, f"no interval: {statistic.note or 'the data do not define this statistic'}"
    c = statistic.components
    if "zero_failure" in c:
        z = c["zero_failure"]
        short = [f"{what} (now {z[what]})" for what in ("models", "clusters") if z[what] < z["needed"]]
        wanted = " and more ".join(short).replace("clusters", "sub-populations")
        return None, (f"nothing varied, so the interval is a zero-failure bound over {z['units']} units; about "
                      f"{z['needed']} each of models and sub-populations in the bin would bound it within the "
                      f"margin" + (f": more {wanted}" if wanted else ", which it has: the estimate itself is off"))
    if "var_points" not in c:
        return None, "this interval has no model-level component to project"
    fisher = c.get("scale") == "atanh"
    transform = TO_SCALE[c.get("scale", "identity")]
    needed, sentence = power_statement(transform(statistic.estimate), transform(threshold.value), c["var_points"],
                                       c["var_models"], c["models_per_arm"], points=statistic.unit,
                                       var_selection=c.get("var_selection", 0.0))
    return needed, sentence + (" (distances and half widths on the Fisher z scale)" if fisher else "")


def p_value(statistic: Statistic, threshold: Threshold) -> float:
    """One-sided p-value that the claim does not hold, reading the 95 % interval as normal."""
    from harness.stats import normal_p_value

    return normal_p_value(statistic.estimate, statistic.lower, statistic.upper, threshold.value,
                          threshold.direction)


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    versions = [("python", platform.python_version())]
    for distribution in _RECORDED_DISTRIBUTIONS:
        try:
            versions.append((distribution, importlib.metadata.version(distribution)))
        except importlib.metadata.PackageNotFoundError:
            pass  # not installed here: record nothing rather than fail a claim test
    return tuple(versions)


def installed_versions() -> dict[str, str]:
    """Python and the recorded packages' versions; packages that are not installed are left out."""
    return dict(_installed_versions())


@dataclass
class ClaimResult:
    """Outcome of one case of one claim test: the verdict and everything its report shows.

    ``versions`` defaults to the running environment and is kept when a result is read
    back from JSON, so a stored result still says what produced it.
    """

    claim: str
    case: str
    dataset: str
    decisive: Statistic
    threshold: Threshold
    statistics: list[Statistic] = field(default_factory=list)
    control: Control | None = None
    paper: dict = field(default_factory=dict)
    models_trained: int = 0
    seconds: float = 0.0
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    versions: dict = field(default_factory=installed_versions)

    def __post_init__(self):
        if not self.claim or not self.case:
            raise ValueError(f"claim and case must be non-empty, got claim={self.claim!r}, case={self.case!r}")
        if not isinstance(self.decisive, Statistic) or not isinstance(self.threshold, Threshold):
            raise ValueError("decisive must be a Statistic and threshold a Threshold")
        if not all(isinstance(s, Statistic) for s in self.statistics):
            raise ValueError("statistics must be a list of Statistic")
        if self.control is not None and not isinstance(self.control, Control):
            raise ValueError("control must be a Control or None")
        if self.models_trained < 0 or self.seconds < 0:
            raise ValueError(f"models_trained and seconds must be >= 0, got {self.models_trained}, {self.seconds}")
        self.models_trained = int(self.models_trained)
        self.seconds = float(self.seconds)
        self.seed = int(self.seed)

    @classmethod
    def from_decision(cls, decision: Decision, statistics: list | None = None, **fields) -> ClaimResult:
        """A result whose decisive statistic, threshold and control are the decision's; its
        statistics are the decision's parts followed by ``statistics``."""
        return cls(decisive=decision.decisive, threshold=decision.threshold, control=decision.control,
                   statistics=[*decision.parts, *(statistics or [])], **fields)

    @property
    def verdict(self) -> str:
        return decide(self.decisive, self.threshold)

    @property
    def control_verdict(self) -> str | None:
        """The control's verdict against the claim's threshold; SUPPORTED means the test cannot
        tell the claim's effect from its absence (module docstring)."""
        return None if self.control is None else decide(self.control.statistic, self.threshold)

    @property
    def power(self) -> tuple[dict | None, str]:
        """What would decide it, when inconclusive (:func:`power_of`)."""
        return power_of(self.decisive, self.threshold)

    @property
    def p_value(self) -> float:
        return p_value(self.decisive, self.threshold)

    @property
    def key(self) -> str:
        """``claim/case``: how reports and the baseline name this case."""
        return f"{self.claim}/{self.case}"

    def all_statistics(self) -> list[Statistic]:
        """The decisive statistic first, then the others; a name listed twice must mean the same figure."""
        by_name: dict[str, Statistic] = {}
        for statistic in [self.decisive, *self.statistics]:
            earlier = by_name.setdefault(statistic.name, statistic)
            if earlier != statistic:
                raise ValueError(f"{self.key}: two different statistics are both named {statistic.name!r}")
        return list(by_name.values())

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "case": self.case,
            "dataset": self.dataset,
            "verdict": self.verdict,
            "decisive": self.decisive.as_dict(),
            "threshold": self.threshold.as_dict(),
            "statistics": [s.as_dict() for s in self.statistics],
            "control": None if self.control is None else self.control.as_dict() | {"verdict": self.control_verdict},
            "paper": dict(self.paper),
            "models_trained": self.models_trained,
            "seconds": self.seconds,
            "seed": self.seed,
            "models_per_arm_to_decide": self.power[0],
            "power": self.power[1],
            "p_value": self.p_value,
            "notes": list(self.notes),
            "versions": dict(self.versions),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClaimResult:
        """Inverse of :meth:`to_dict`; the verdict is recomputed, not read."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - _DERIVED_KEYS
        if unknown:
            raise ValueError(f"unknown keys in a ClaimResult dict: {sorted(unknown)}; allowed: {sorted(known)}")
        missing = {"claim", "case", "dataset", "decisive", "threshold"} - set(d)
        if missing:
            raise ValueError(f"a ClaimResult dict needs the keys {sorted(missing)}")
        values = {name: d[name] for name in known if name in d}
        values["decisive"] = Statistic(**d["decisive"])
        values["threshold"] = Threshold(**d["threshold"])
        values["statistics"] = [Statistic(**s) for s in d.get("statistics", [])]
        control = d.get("control")
        values["control"] = None if control is None else Control.from_dict(control)
        return cls(**values)

    def paper_text(self) -> str:
        """The paper's figure and its source in words ('' when there is none)."""
        figure, source = self.paper.get("figure", ""), self.paper.get("source", "")
        parts = [f"{figure} ({source})" if figure and source else str(figure or source)]
        parts += [f"{k}: {v}" for k, v in self.paper.items() if k not in ("figure", "source")]
        return "; ".join(part for part in parts if part)

    def message(self) -> str:
        sentences = [
            f"{self.key} on {self.dataset}: {self.verdict.upper()}.",
            f"Decisive statistic {self.decisive}; the claim holds when it is {self.threshold} "
            f"(threshold from {self.threshold.source}).",
        ]
        if self.paper:
            sentences.append(f"Paper: {self.paper_text()}.")
        if self.power[1]:
            sentences.append(f"What would decide it: {self.power[1]}.")
        if self.control is not None:
            sentences.append(f"Negative control ({self.control.destroyed}): {self.control.statistic}, "
                             f"{self.control_verdict}.")
        return " ".join(sentences)


class CaseReport(NamedTuple):
    """What one case of a claim hands to its report (the ``conclude`` fixture takes it unpacked):
    the result, its figures (name -> matplotlib figure) and tables (name -> DataFrame)."""

    result: ClaimResult
    figures: dict = {}
    tables: dict = {}
