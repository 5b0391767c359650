"""Memorization estimators, each computed from an ensemble's stored masks and margins.

For training point i, with P_in the share of models trained *with* i that classify it
correctly and P_out the share of models trained *without* it (FZ20 eq. 1):

    mem(i) = P_in - P_out.

- :func:`exact_loo`: P_in over the models trained on the base set S, P_out over the models
  trained on S \\ {i} (a :func:`harness.masks.loo_plan`);
- :func:`closed_form_loo`: the ridge family's exact LOO, P_in and P_out over the same draws
  (the refit without i is read from ``loo_margin``);
- :func:`subsampled`: Feldman & Zhang's estimator, P_in over the models whose random subset
  contains i and P_out over the rest; it estimates memorization for a training set of
  size r n, not n;
- :func:`fractional`: IMN26's (P_in - P_out) / (P_in + P_out), from any of the above.

Intervals: Newcombe's hybrid score interval for P_in - P_out (treating the two samples as
independent, which is conservative for the paired closed-form LOO); for the fractional
score, the image of the box of the two Wilson intervals at level sqrt(1 - alpha) each,
since the ratio rises in P_in and falls in P_out (coverage >= 1 - alpha).

Every estimate keeps the rows behind it (:class:`ModelRows`): per model k and scored point i,
whether k counts toward P_in or P_out of i and whether it was right. With a weight w_k per
model (a bootstrap replicate's counts, ``harness.stats.crossed_bootstrap``),

    P_in(i; w) = sum_k w_k hit_in[k, i] / sum_k w_k in[k, i]     (likewise P_out),

so :meth:`MemorizationScores.rescored` recomputes every score from resampled models, and
``model_groups`` says which rows are resampled together (one pool per design arm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import stats


@dataclass(frozen=True, eq=False)
class ModelRows:
    """Per model (rows) and scored point (columns): counts toward P_in / P_out, and right there.

    ``groups`` labels each row with the pool it is resampled in (module docstring).
    """

    hit_in: np.ndarray
    in_: np.ndarray
    hit_out: np.ndarray
    out: np.ndarray
    groups: np.ndarray

    @classmethod
    def of(cls, correct_in, in_, correct_out, out, groups) -> "ModelRows":
        as_float = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        return cls(as_float(correct_in & in_), as_float(in_), as_float(correct_out & out), as_float(out),
                   np.asarray(groups))

    def columns(self, rows: np.ndarray) -> "ModelRows":
        return ModelRows(self.hit_in[:, rows], self.in_[:, rows], self.hit_out[:, rows], self.out[:, rows],
                         self.groups)

    def shares(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P_in and P_out of every point with model k weighted by ``weights[k]``."""
        weights = np.asarray(weights, dtype=np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            return weights @ self.hit_in / (weights @ self.in_), weights @ self.hit_out / (weights @ self.out)


@dataclass(frozen=True, eq=False)
class MemorizationScores:
    """Per-point scores with the counts behind them and a (1 - alpha) interval per point.

    ``rows`` (None for scores made from counts alone) keeps the models behind the counts, so
    :meth:`rescored` can recompute the scores from a bootstrap replicate of the models.
    """

    method: str
    points: np.ndarray
    score: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    correct_in: np.ndarray
    n_in: np.ndarray
    correct_out: np.ndarray
    n_out: np.ndarray
    alpha: float = 0.05
    rows: ModelRows | None = None
    is_fractional: bool = False

    def __len__(self) -> int:
        return len(self.points)

    @property
    def p_in(self) -> np.ndarray:
        return self.correct_in / self.n_in

    @property
    def p_out(self) -> np.ndarray:
        return self.correct_out / self.n_out

    def to_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame({
            "point": self.points, "score": self.score, "lower": self.lower, "upper": self.upper,
            "p_in": self.p_in, "p_out": self.p_out, "n_in": self.n_in, "n_out": self.n_out,
        }).set_index("point")

    def at(self, points) -> "MemorizationScores":
        """The scores of the given training points (they must have been scored)."""
        points = np.asarray(points)
        position = {p: k for k, p in enumerate(self.points.tolist())}
        missing = [p for p in points.tolist() if p not in position]
        if missing:
            raise ValueError(f"{self.method}: points {missing[:5]} were not scored")
        rows = np.array([position[p] for p in points.tolist()], dtype=np.int64)
        return MemorizationScores(self.method, self.points[rows], self.score[rows], self.lower[rows],
                                  self.upper[rows], self.correct_in[rows], self.n_in[rows],
                                  self.correct_out[rows], self.n_out[rows], self.alpha,
                                  None if self.rows is None else self.rows.columns(rows), self.is_fractional)

    @property
    def model_groups(self) -> np.ndarray:
        """The pool of each model row, for ``harness.stats.crossed_bootstrap``."""
        if self.rows is None:
            raise ValueError(f"{self.method}: these scores were made from counts alone, without their models")
        return self.rows.groups

    def rescored(self, weights: np.ndarray) -> np.ndarray:
        """Every point's score with model k weighted by ``weights[k]`` (all ones: ``score``).

        A point none of whose in-models (or out-models) has weight gets NaN: a resample can
        leave it without one arm, and the statistic built on the scores decides what to do."""
        if self.rows is None:
            raise ValueError(f"{self.method}: these scores were made from counts alone, without their models")
        p_in, p_out = self.rows.shares(weights)
        return _fractional_score(p_in, p_out) if self.is_fractional else (p_in - p_out).astype(float)


def from_rows(method, points, rows: ModelRows, alpha) -> MemorizationScores:
    counts = [np.rint(matrix.sum(0, dtype=np.float64)).astype(np.int64)
              for matrix in (rows.hit_in, rows.in_, rows.hit_out, rows.out)]
    score, lower, upper = stats.newcombe_difference(*counts, alpha)
    return MemorizationScores(method, np.asarray(points), np.asarray(score, dtype=float),
                              np.asarray(lower, dtype=float), np.asarray(upper, dtype=float),
                              *counts, alpha, rows)


def _check(masks: np.ndarray, train_margin: np.ndarray) -> None:
    if masks.ndim != 2 or masks.dtype != np.bool_:
        raise ValueError(f"masks must be a 2-D bool array, got {masks.dtype} {masks.shape}")
    if train_margin.shape != masks.shape:
        raise ValueError(f"train_margin has shape {train_margin.shape}, masks {masks.shape}: "
                         "one row per model and one column per training point in both")
    _check_no_nan("train_margin", train_margin, np.ones(masks.shape, dtype=bool))


def _check_no_nan(name: str, margin: np.ndarray, where: np.ndarray) -> None:
    # NaN > 0 is False: a diverged model would silently count as misclassifying the point.
    bad = np.argwhere(np.isnan(margin) & where)
    if len(bad):
        raise ValueError(f"{name} holds {len(bad)} NaN entries (first: model {bad[0][0]}, point {bad[0][1]}): "
                         "a model diverged or its row was never written; retrain those models")


def subsampled(masks: np.ndarray, train_margin: np.ndarray, alpha: float = 0.05) -> MemorizationScores:
    """Feldman & Zhang's estimate for every point from a subsampled ensemble."""
    _check(masks, train_margin)
    correct = train_margin > 0
    n_in = masks.sum(0)
    n_out = len(masks) - n_in
    never = np.flatnonzero((n_in == 0) | (n_out == 0))
    if len(never):
        raise ValueError(f"{len(never)} points (e.g. {never[:5].tolist()}) are never left out or never "
                         "included; use a balanced plan with more models (harness.masks.subsampled_plan)")
    return from_rows("subsampled", np.arange(masks.shape[1]),
                      ModelRows.of(correct, masks, correct, ~masks, np.zeros(len(masks), dtype=np.int64)), alpha)


def exact_loo(masks: np.ndarray, train_margin: np.ndarray, left_out: np.ndarray,
              targets=None, alpha: float = 0.05) -> MemorizationScores:
    """Exact leave-one-out from a LOO plan: rows with ``left_out == -1`` train on a base set,
    rows with ``left_out == i`` on a base set minus i; a base row counts toward P_in of the
    targets its base set holds (every target, when the base is S). ``targets`` defaults to every
    point left out somewhere."""
    _check(masks, train_margin)
    left_out = np.asarray(left_out)
    if left_out.shape != (len(masks),):
        raise ValueError(f"left_out needs one entry per model ({len(masks)}), got {left_out.shape}")
    base_rows = np.flatnonzero(left_out == -1)
    if len(base_rows) == 0:
        raise ValueError("no model was trained on the full base set (left_out == -1)")
    available = np.unique(left_out[left_out >= 0])
    targets = available if targets is None else np.asarray(targets, dtype=np.int64)
    never = np.setdiff1d(targets, available)
    if len(never):
        raise ValueError(f"targets {never[:5].tolist()} were never left out; a LOO plan scores only "
                         f"its own targets ({len(available)} here)")
    correct = train_margin[:, targets] > 0
    base = (left_out == -1)[:, None] & masks[:, targets]
    out = left_out[:, None] == targets[None, :]
    # One pool for the base models and one for each target's models.
    return from_rows("exact_loo", targets, ModelRows.of(correct, base, correct, out, left_out), alpha)


def closed_form_loo(masks: np.ndarray, train_margin: np.ndarray, loo_margin: np.ndarray,
                    alpha: float = 0.05) -> MemorizationScores:
    """Exact LOO for the ridge family: each draw's fit and its closed-form refit without i."""
    _check(masks, train_margin)
    if loo_margin.shape != masks.shape:
        raise ValueError(f"loo_margin has shape {loo_margin.shape}, masks {masks.shape}")
    _check_no_nan("loo_margin", loo_margin, masks)  # NaN off-mask is how the trainer marks "not in S"
    n_in = masks.sum(0)
    if (n_in == 0).any():
        raise ValueError(f"{int((n_in == 0).sum())} points are in no model's training set")
    # Each draw gives both arms of a point (its fit and its refit without the point): one pool.
    rows = ModelRows.of(train_margin > 0, masks, loo_margin > 0, masks, np.zeros(len(masks), dtype=np.int64))
    return from_rows("closed_form_loo", np.arange(masks.shape[1]), rows, alpha)


def fractional(scores: MemorizationScores) -> MemorizationScores:
    """IMN26's (P_in - P_out) / (P_in + P_out) from the counts behind any estimate (0 if both are 0)."""
    level = 1.0 - np.sqrt(1.0 - scores.alpha)
    in_low, in_high = stats.wilson_interval(scores.correct_in, scores.n_in, level)
    out_low, out_high = stats.wilson_interval(scores.correct_out, scores.n_out, level)

    return MemorizationScores(f"fractional({scores.method})", scores.points,
                              _fractional_score(scores.p_in, scores.p_out), _fractional_score(in_low, out_high),
                              _fractional_score(in_high, out_low), scores.correct_in, scores.n_in,
                              scores.correct_out, scores.n_out, scores.alpha, scores.rows, is_fractional=True)


def _fractional_score(p_in, p_out) -> np.ndarray:
    total = np.asarray(p_in + p_out, dtype=float)
    return np.divide(p_in - p_out, total, out=np.zeros_like(total), where=total > 0)
