"""Distances and nearest neighbours between rows (harness.neighbours)."""

from __future__ import annotations

import numpy as np
import pytest

from harness import neighbours
from harness.duplicates import unit_rows


def test_distances_match_the_direct_differences():
    rng = np.random.default_rng(0)
    queries, points = rng.normal(size=(7, 5)), rng.normal(size=(11, 5))
    direct = np.linalg.norm(queries[:, None] - points[None], axis=2)
    np.testing.assert_allclose(neighbours.distances(queries, points), direct, rtol=1e-12)


def test_nearest_can_exclude_each_point_itself():
    points = unit_rows(np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.1], [1.0, 0.0, 0.0]]))
    distance, index = neighbours.nearest(points, points, exclude_self=True, unit_length=True)
    assert index.tolist()[:2] == [1, 0]
    np.testing.assert_allclose(distance[:2], np.linalg.norm(points[0] - points[1]))
    distance, index = neighbours.nearest(points, points, unit_length=True)
    assert index.tolist() == [0, 1, 2] and np.allclose(distance, 0, atol=1e-6)


def test_nearest_breaks_ties_by_the_lowest_index_across_blocks(monkeypatch):
    monkeypatch.setattr(neighbours, "CHUNK", 2)
    points = np.array([[0.0], [2.0], [4.0], [2.0], [0.0]])
    distance, index = neighbours.nearest(np.array([[1.0], [3.0], [0.0], [5.0], [2.0]]), points)
    assert index.tolist() == [0, 1, 0, 2, 1] and distance.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert neighbours.nearest_other_distances(points).tolist() == [0.0, 0.0, 2.0, 0.0, 0.0]
    assert neighbours.nearest(points, points, exclude_self=True)[1].tolist() == [4, 3, 1, 1, 0]


def test_unit_length_rows_take_their_norms_as_one():
    rows = unit_rows(np.random.default_rng(1).normal(size=(6, 4)))
    np.testing.assert_allclose(neighbours.distances(rows, rows, unit_length=True), neighbours.distances(rows, rows),
                               atol=1e-7)
    # A constant row has no direction; as a unit row it sits at sqrt(2) from every other.
    flat = unit_rows(np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]))
    assert neighbours.distances(flat, flat, unit_length=True)[0, 1] == pytest.approx(np.sqrt(2))


def test_nearest_other_distances_needs_two_points():
    with pytest.raises(ValueError, match="at least 2 points"):
        neighbours.nearest_other_distances(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="exclude_self"):
        neighbours.nearest(np.zeros((2, 3)), np.zeros((3, 3)), exclude_self=True)
