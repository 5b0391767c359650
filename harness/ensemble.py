"""The one training path: a data set, a model family, a mask plan -> a stored ensemble.

``train_ensemble`` keys the run by (data fingerprint, family spec, plan, seed) in the
store, trains only the models not yet complete (in fixed chunks of ``models_per_pass``,
so an interrupted run resumes with bit-identical results) and returns an :class:`Ensemble`
that reads the stored arrays. Where the chunks train (threads of this process, or Ray tasks on
a cluster) is ``harness.executors``'s choice; the bytes are the same. Several processes asking
for the same run share its chunks, each model trained once (``harness.store``);
``harness.worker`` trains a shard of it on another host.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from harness import executors
from harness.data import Dataset
from harness.masks import MaskPlan
from harness.store import Run, Store

HARNESS_RESULTS_VERSION = 2  # bump when a change alters what stored runs contain (2: trainers reordered float sums)
# A pass's float sums depend on how many threads split them (ridge margins move by about 1e-5
# between 1 and 2 threads), so every pass runs on one thread, whatever the process has, and the
# run's config records it: a resume in any process gives the bytes an uninterrupted run gives.
THREADS_PER_PASS = 1


@dataclass(frozen=True, eq=False)
class Ensemble:
    dataset: Dataset
    spec: object
    plan: MaskPlan
    arrays: dict
    models_trained: int
    key: str

    @property
    def masks(self) -> np.ndarray:
        return self.plan.masks

    @property
    def n_models(self) -> int:
        return self.plan.n_models

    @property
    def train_correct(self) -> np.ndarray:
        return self.arrays["train_margin"] > 0

    @property
    def test_correct(self) -> np.ndarray:
        return self.arrays["test_margin"] > 0

    def test_accuracy(self) -> np.ndarray:
        """Per model accuracy on the test split."""
        return self.test_correct.mean(1)

    def train_accuracy(self) -> np.ndarray:
        """Per model accuracy on the points it was trained on."""
        return (self.train_correct & self.masks).sum(1) / self.masks.sum(1)


def check_inputs(dataset: Dataset, spec, plan: MaskPlan, seed) -> None:
    """A ValueError naming the problem, before anything is created on disk: an empty split,
    non-finite features (which split, which row), masks that are not a 2-D bool array or do not
    cover the training split, a negative or non-integer seed, fewer than one model per pass."""
    for split, x in (("training", dataset.x_train), ("test", dataset.x_test)):
        if len(x) == 0:
            raise ValueError(f"{dataset.name}: the {split} split is empty")
        if x.is_floating_point():
            finite = torch.isfinite(x.reshape(len(x), -1)).all(1)
            if not finite.all():
                row = int(torch.nonzero(~finite)[0])
                raise ValueError(f"{dataset.name}: {int((~finite).sum())} {split} point(s) have NaN or infinite "
                                 f"features (first: row {row}); clean or drop them before training")
    masks = np.asarray(plan.masks)
    if masks.ndim != 2 or masks.dtype != np.bool_:
        raise ValueError(f"masks must be a 2-D bool array (models x training points), got {masks.dtype} "
                         f"{masks.shape}")
    if plan.n_points != dataset.n_train:
        raise ValueError(f"plan covers {plan.n_points} points, {dataset.name} has {dataset.n_train}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if getattr(spec, "models_per_pass", 1) < 1:
        raise ValueError(f"models_per_pass must be at least 1, got {spec.models_per_pass}")


def train_ensemble(dataset: Dataset, spec, plan: MaskPlan, store: Store, seed: int = 0,
                   device: str = "cpu", progress: bool = True,
                   executor: executors.Executor | str | None = None) -> Ensemble:
    """The run's ensemble, its missing chunks trained first where ``executor`` says (``local``
    or ``ray``; None: the default ``harness.executors.configure`` set)."""
    run = open_run(dataset, spec, plan, store, seed)
    filled = executors.fill(run, dataset, spec, plan.masks, plan.seeds(seed), device, executor, progress,
                            desc=f"{spec.family} on {dataset.name} ({plan.kind})")
    return Ensemble(dataset, spec, plan, run.arrays(), filled.trained, run.key)


def open_run(dataset: Dataset, spec, plan: MaskPlan, store: Store, seed: int = 0) -> Run:
    """The run :func:`train_ensemble` fills, created empty if new, nothing trained: its key is
    what ``python -m harness.worker --run KEY`` shards take."""
    check_inputs(dataset, spec, plan, seed)
    return store.open(run_config(dataset, spec, plan, seed), plan.masks, spec.schema(dataset))


def run_config(dataset: Dataset, spec, plan: MaskPlan, seed: int) -> dict:
    """What keys a run in the store (with its masks); ``harness.worker`` rebuilds the run from it."""
    return {"version": HARNESS_RESULTS_VERSION, "dataset": dataset.name,
            "data": dataset.fingerprint, "spec": spec.config(), "plan": plan.config(), "seed": seed,
            "threads_per_pass": THREADS_PER_PASS}


def pass_trainer(dataset: Dataset, spec, masks: np.ndarray, seeds: np.ndarray, device: str):
    """``train_rows(rows)`` for :meth:`Run.fill` and :meth:`Run.train_shard`: one pass of ``spec``
    on the chunk's masks and seeds, on ``THREADS_PER_PASS`` torch threads; call it inside
    ``torch_threads(THREADS_PER_PASS)``."""

    def train_pass(rows):
        # Set again in each worker thread (never put back there: only the same value is ever
        # set while passes run, so no thread changes another's count mid-pass).
        torch.set_num_threads(THREADS_PER_PASS)
        return spec.train(dataset, masks[rows], seeds[rows], device)

    return train_pass


def pass_workers(chunks: list, device: str) -> int:
    """Passes to train at once: on CPU one per torch thread, at most one per chunk left
    (a resumed run may have a few); one on an accelerator."""
    if torch.device(device).type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), len(chunks)))


@contextmanager
def torch_threads(count: int):
    """torch's CPU threads set to ``count`` inside the block, put back after.

    On CPU the training path spends torch's N threads on up to N passes at once (as many as
    the ensemble has left), one thread each (``THREADS_PER_PASS``): a pass's operations are
    too short to share well between threads (two passes of one thread each trained 65 default
    MLP models/s on 2 cores, one pass of two threads 47; ridge: 8.9 against 11.0 ms per model).
    A pass's result depends on its own thread count only, not on the passes beside it.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
