"""Euclidean distances and nearest neighbours between rows, in float64: the suite's one search.

For query rows q_j and point rows p_i,

    ||q_j - p_i||^2 = ||q_j||^2 + ||p_i||^2 - 2 q_j . p_i,

one matrix product per block of ``CHUNK`` queries, clipped at 0 against rounding before the
square root. The nearest point of q_j is argmin_i ||q_j - p_i|| (ties: the lowest i); with
``exclude_self`` the queries are the points themselves and no point is its own neighbour. For
unit-length rows (``unit_length``, :func:`harness.duplicates.unit_rows`) both squared norms are
taken as exactly 1, so the squared distance is 2 - 2 q_j . p_i.
"""

from __future__ import annotations

import numpy as np

CHUNK = 2048  # query rows per distance block: a 2,048 x 60,000 block of float64 is ~1 GB


def _squared_norms(rows: np.ndarray, unit_length: bool) -> np.ndarray:
    return np.ones(len(rows)) if unit_length else (rows**2).sum(1)


def squared_distances(queries: np.ndarray, points: np.ndarray, unit_length: bool = False,
                      point_norms: np.ndarray | None = None) -> np.ndarray:
    """(Q, N) squared distances of the module docstring, not yet clipped at 0.

    ``point_norms`` (the points' squared norms) saves recomputing them block after block.
    """
    if point_norms is None:
        point_norms = _squared_norms(points, unit_length)
    return _squared_norms(queries, unit_length)[:, None] + point_norms[None, :] - 2 * queries @ points.T


def distances(queries: np.ndarray, points: np.ndarray, unit_length: bool = False) -> np.ndarray:
    """(Q, N) Euclidean distances between every query and every point."""
    return np.sqrt(np.maximum(squared_distances(queries, points, unit_length), 0.0))


def nearest(queries: np.ndarray, points: np.ndarray, exclude_self: bool = False,
            unit_length: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and index of, each query's nearest point (module docstring)."""
    if exclude_self and len(queries) != len(points):
        raise ValueError(f"exclude_self needs the queries to be the points, got {len(queries)} and {len(points)} rows")
    found = np.empty(len(queries))
    indices = np.empty(len(queries), dtype=np.int64)
    point_norms = _squared_norms(points, unit_length)
    for start in range(0, len(queries), CHUNK):
        block = queries[start:start + CHUNK]
        squared = squared_distances(block, points, unit_length, point_norms)
        rows = np.arange(len(block))
        if exclude_self:
            squared[rows, rows + start] = np.inf
        best = squared.argmin(1)
        indices[start:start + len(block)] = best
        found[start:start + len(block)] = np.sqrt(np.maximum(squared[rows, best], 0.0))
    return found, indices


def nearest_other_distances(points: np.ndarray) -> np.ndarray:
    """nn(i) = min_{i' != i} ||p_i - p_i'||: each point's distance to its nearest other point."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) < 2:
        raise ValueError(f"need a 2-D array of at least 2 points for nearest-neighbour distances, "
                         f"got shape {points.shape}")
    return nearest(points, points, exclude_self=True)[0]
