"""``python -m harness``: the claims from the command line.

    python -m harness list
    python -m harness verify CLAIM_ID --data FILE.npz --model MODULE:FACTORY [--profile P] [--seed N]
                             [--store PATH] [--reports-dir PATH] [--device D]

``list`` prints every claim with its sentence, and says which do not run on one's own data.
``verify`` runs one claim's study (``harness.runner``) and prints its verdict line, the runs
the store reused or trained, and where the report went. ``--data`` is a ``.npz`` file
(``harness.data.from_npz``: ``x_train``, ``y_train``, ``x_test``, ``y_test``, optionally
``group_train``, ``group_test``, ``mislabeled_train``, ``num_classes``) or ``MODULE:NAME`` naming
a ``Dataset`` or a function returning one. ``--model`` is ``MODULE:NAME`` naming a
``harness.model_family.ModelFamily`` (or any spec of the training path), or a factory
``(num_classes, input_shape) -> nn.Module`` trained with the ``cpu_short`` recipe; or one of the
suite's families, ``ridge``, ``mlp``, ``cnn``; for mem-gen-anticorrelated, ``MODULE:NAME`` of a
list of such families, one configuration each. Modules are imported from the working directory
first. The same data, family, profile and seed give the same verdict as the same study run by
pytest, from the same stored runs.

Exit status: 0 supported, 1 refuted (or a supported negative control: the test cannot tell the
claim's effect from its absence), 3 inconclusive, 2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

EXIT_STATUS = {"supported": 0, "refuted": 1, "inconclusive": 3}
SUITE_FAMILIES = ("ridge", "mlp", "cnn")


def _named(reference: str, what: str):
    """The object ``MODULE:NAME`` names, the module imported from the working directory first."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--{what} {reference!r}: expected MODULE:NAME")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        raise ValueError(f"--{what} {reference!r}: {missing}") from None
    finally:
        sys.path.pop(0)
    if not hasattr(module, attribute):
        raise ValueError(f"--{what} {reference!r}: module {module_name} has no {attribute!r}")
    return getattr(module, attribute)


def load_data(reference: str):
    from harness.data import Dataset, from_npz

    if reference.endswith(".npz"):
        return from_npz(reference)
    named = _named(reference, "data")
    data = named() if callable(named) and not isinstance(named, Dataset) else named
    if not isinstance(data, Dataset):
        raise ValueError(f"--data {reference!r} gives a {type(data).__name__}, not a harness.data.Dataset")
    return data


def load_family(reference: str, data):
    """The family ``--model`` names, or the list of families a list names."""
    if reference in SUITE_FAMILIES:
        return reference
    named = _named(reference, "model")
    if isinstance(named, (list, tuple)):
        return [_family(item, data, f"{reference}[{i}]", None) for i, item in enumerate(named)]
    return _family(named, data, reference, reference.partition(":")[2])


def _family(named, data, reference: str, name: str | None):
    """``named`` as a family: itself, a suite family's name, or a factory's ModelFamily (called ``name``)."""
    from harness.model_family import ModelFamily

    if isinstance(named, str) and named in SUITE_FAMILIES:
        return named
    if hasattr(named, "train") and hasattr(named, "config"):
        return named
    if callable(named):
        return ModelFamily(named, num_classes=data.num_classes, input_shape=tuple(data.x_train.shape[1:]), name=name)
    raise ValueError(f"--model {reference!r} is neither a model family nor a factory of nn.Modules")


def _list(_arguments) -> int:
    from harness.runner import CLAIMS

    width = max(map(len, CLAIMS))
    for claim_id, entry in CLAIMS.items():
        own = f" (not on one's own data: {entry.own_data})" if entry.own_data else ""
        if entry.across_configurations:
            own = " (on one's own data: a list of families, one configuration each)"
        print(f"{claim_id:<{width}}  {entry.sentence}{own}")
    return 0


def _verify(arguments) -> int:
    from harness.runner import run, verdict_line
    from harness.verdict import SUPPORTED

    data = load_data(arguments.data)
    family = load_family(arguments.model, data)
    reports = Path(arguments.reports_dir)
    result = run(arguments.claim, data, family, profile=arguments.profile, store=arguments.store,
                 device=arguments.device, seed=arguments.seed, reports_dir=reports)
    print(verdict_line(result))
    if result.control is not None:
        print(f"negative control ({result.control.destroyed}): {result.control.statistic}, {result.control_verdict}")
    print(result.notes[-1])
    print(f"report: {reports / result.claim}")
    if result.control_verdict == SUPPORTED:
        return 1
    return EXIT_STATUS[result.verdict]


def parser() -> argparse.ArgumentParser:
    from harness import profiles

    top = argparse.ArgumentParser(prog="python -m harness", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the claims with their sentences").set_defaults(handler=_list)
    verify = commands.add_parser("verify", help="one claim on one's own data and model",
                                 epilog="exit status: 0 supported, 1 refuted or a supported control, 3 inconclusive")
    verify.add_argument("claim", metavar="CLAIM_ID", help="a claim id (python -m harness list)")
    verify.add_argument("--data", required=True, help="FILE.npz, or MODULE:NAME of a Dataset or a function giving one")
    verify.add_argument("--model", required=True,
                        help="MODULE:NAME of a ModelFamily or of a factory (num_classes, input_shape) -> nn.Module; "
                             "or ridge, mlp, cnn; for mem-gen-anticorrelated, of a list of families")
    verify.add_argument("--profile", default=os.environ.get("MEMSUITE_PROFILE", "default"),
                        choices=sorted(profiles.PROFILES), help="budget (default: $MEMSUITE_PROFILE or default)")
    verify.add_argument("--seed", type=int, default=0, help="seed of the models, not of the data (default 0)")
    verify.add_argument("--store", default=None, help="result store (default: $MEMSUITE_STORE or ~/.cache/memsuite)")
    verify.add_argument("--reports-dir", default="reports", help="where the report goes (default: reports)")
    verify.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    verify.set_defaults(handler=_verify)
    return top


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        return arguments.handler(arguments)
    except ValueError as problem:   # bad data, an unknown claim or module, a family that does not fit the data
        print(f"python -m harness: {problem}", file=sys.stderr)
        return 2
