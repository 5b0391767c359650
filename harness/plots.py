"""Figures of the claim reports (matplotlib, headless). Each returns a Figure for
:func:`harness.report.write_case_report`, which saves and closes it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.profiles import SIZE_BINS  # noqa: E402

BIN_COLOURS = {"singleton": "tab:red", "small": "tab:orange", "large": "tab:blue", "unknown": "tab:gray"}


def error_histogram(table: pd.DataFrame, title: str) -> Figure:
    """Approximation error (subsampled - LOO) per size bin, stacked."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(-1, 1, 41)
    groups = [(name, table.loc[table["bin"] == name, "error"]) for name in BIN_COLOURS
              if (table["bin"] == name).any()]
    ax.hist([g for _, g in groups], bins=bins, stacked=True, label=[n for n, _ in groups],
            color=[BIN_COLOURS[n] for n, _ in groups])
    ax.axvline(0, color="k", lw=0.8)
    return _by_subpopulation(fig, ax, "subsampled score - exact LOO score", "points", title)


def loo_vs_subsampled(table: pd.DataFrame, title: str) -> Figure:
    """Each point's exact LOO score against its subsampled score, coloured by sub-population size."""
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    for name, colour in BIN_COLOURS.items():
        rows = table[table["bin"] == name]
        if len(rows):
            ax.errorbar(rows["loo"], rows["subsampled"],
                        xerr=[rows["loo"] - rows["loo_lower"], rows["loo_upper"] - rows["loo"]],
                        fmt="o", ms=3, alpha=0.6, elinewidth=0.4, color=colour, label=name)
    ax.plot([-1, 1], [-1, 1], "k--", lw=0.8)
    ax.set_xlim(-0.3, 1.05)
    ax.set_ylim(-0.3, 1.05)
    ax.set_xlabel("exact leave-one-out memorization")
    ax.set_ylabel("subsampled estimate")
    ax.set_title(title, fontsize=9)
    ax.legend(title="sub-population", fontsize=8)
    fig.tight_layout()
    return fig


def interval_bars(names: list[str], estimates, lowers, uppers, ylabel: str, title: str,
                  reference: float | None = 0.0) -> Figure:
    """One estimate with its interval per named group."""
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) + 2), 3.6))
    x = np.arange(len(names))
    estimates, lowers, uppers = map(np.asarray, (estimates, lowers, uppers))
    ax.errorbar(x, estimates, yerr=[estimates - lowers, uppers - estimates], fmt="o", capsize=4)
    if reference is not None:
        ax.axhline(reference, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def curve_with_band(x, estimate, lower, upper, xlabel: str, ylabel: str, title: str,
                    label: str | None = None, ax=None, reference: float | None = 0.0) -> Figure:
    """A statistic against a swept parameter with its interval as a band."""
    fig = ax.figure if ax is not None else plt.figure(figsize=(5.5, 3.6))
    ax = ax or fig.add_subplot()
    ax.plot(x, estimate, "o-", label=label)
    ax.fill_between(x, lower, upper, alpha=0.25)
    if reference is not None:
        ax.axhline(reference, color="k", lw=0.8, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if label:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def scatter_with_fit(x, y, xlabel: str, ylabel: str, title: str, labels=None) -> Figure:
    """Scatter of per-configuration figures with a least-squares line."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ax.scatter(x, y)
    if labels is not None:
        for xi, yi, text in zip(x, y, labels):
            ax.annotate(text, (xi, yi), fontsize=6, alpha=0.7)
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        grid = np.linspace(x.min(), x.max(), 10)
        ax.plot(grid, slope * grid + intercept, "k--", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def selected_by_size(table: pd.DataFrame, title: str) -> Figure:
    """Stacked bars: the share of each size bin among the points each threshold selects
    (``table`` from ``harness.claims.threshold_dependence.sweep_table``)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = np.arange(len(table))
    bottom = np.zeros(len(table))
    for name in SIZE_BINS:
        ax.bar(x, table[f"share_{name}"], bottom=bottom, color=BIN_COLOURS[name], label=name)
        bottom += table[f"share_{name}"].to_numpy()
    ax.set_xticks(x, [f"{t:g}\n(n={n})" for t, n in zip(table["theta"], table["selected"])], fontsize=7)
    return _by_subpopulation(fig, ax, "memorization threshold theta (points selected)", "share of selected points",
                             title)


def _by_subpopulation(fig: Figure, ax, xlabel: str, ylabel: str, title: str) -> Figure:
    """Labels, title and a legend of sub-population size bins."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(title="sub-population", fontsize=8)
    fig.tight_layout()
    return fig


def subpopulation_sizes(sizes: dict, title: str) -> Figure:
    """Histogram of sub-population sizes (one count per sub-population, log-spaced bins), one
    outline per labelling (``{label: sizes of its sub-populations}``), size-bin edges marked."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    largest = max(int(np.max(v)) for v in sizes.values())
    edges = np.unique(np.round(np.logspace(0, np.log10(largest + 1), 25)).astype(int)) - 0.5
    for label, values in sizes.items():
        ax.hist(values, bins=edges, histtype="step", lw=1.5, label=label)
    for name, (low, high) in SIZE_BINS.items():
        if high < largest:
            ax.axvline(high + 0.5, color=BIN_COLOURS[name], ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("sub-population size (training points)")
    ax.set_ylabel("sub-populations")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
