"""Forked workers: same results in job order whatever the split, failures raised."""

import numpy as np
import pytest

from graphinv.detect.communities import DetectionOptions, _igraph_all
from graphinv.detect.workers import Forked, start_forked


def _squares(jobs, offset):
    return [job * job + offset for job in jobs]


def _fail_on_three(jobs):
    if 3 in jobs:
        raise ValueError("three is not allowed")
    return list(jobs)


@pytest.mark.parametrize("processes", [1, 2, 3, 8])
def test_results_come_back_in_job_order(processes):
    jobs = [5, 1, 4, 2, 3, 9, 7]
    got = start_forked(_squares, jobs, 1, cost=float, processes=processes)()
    assert got == [job * job + 1 for job in jobs]


def test_a_failing_child_is_reported():
    with pytest.raises(RuntimeError, match="ValueError: three is not allowed"):
        start_forked(_fail_on_three, [1, 2, 3, 4], cost=float, processes=2)()


def test_forked_returns_and_raises():
    assert Forked(sum, [1, 2, 3]).result() == 6
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        Forked(divmod, 1, 0).result()


def test_leiden_split_among_children_matches_one_child():
    """Per-component Leiden gives the same memberships on 1 or 2 children."""
    rng = np.random.default_rng(5)
    jobs = []
    for size in (30, 8, 60, 12):
        pairs = rng.integers(0, size, size=(size * 3, 2))
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        jobs.append((size, pairs, rng.uniform(0.5, 2.0, len(pairs))))
    options = DetectionOptions()

    def cost(job):
        return job[0] + len(job[1])

    one = start_forked(_igraph_all, jobs, options, cost=cost, processes=1)()
    two = start_forked(_igraph_all, jobs, options, cost=cost, processes=2)()
    assert len(one) == len(jobs)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
