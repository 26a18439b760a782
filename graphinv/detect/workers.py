"""Per-component jobs in forked child processes, several at once, results in job order.

Leiden runs on each connected component on its own, seeded per component, so which
process runs a component changes nothing in its result: splitting the components among
a few children gives the same memberships as one child, in less wall time on a machine
with more than one core. Fork hands the (large) arguments over without copying; only
the results come back, pickled through a pipe.

Examples
--------
>>> def lengths(jobs, extra):
...     return [len(job) + extra for job in jobs]
>>> collect = start_forked(lengths, ["a", "bbb", "cc"], 10, cost=len, processes=2)
>>> collect()
[11, 13, 12]
>>> pending = Forked(sum, [1, 2, 3])  # runs while this process goes on
>>> pending.result()
6
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Forked", "default_processes", "start_forked"]

# More children than this only add forked copies and pipes: the per-component jobs of a
# million-account platform are done in seconds on two.
_MAX_PROCESSES = 4


def default_processes() -> int:
    """CPUs this process may run on (its affinity), at most 4."""
    return max(1, min(len(os.sched_getaffinity(0)), _MAX_PROCESSES))


def start_forked(
    function: Callable[..., list[Any]],
    jobs: Sequence[Any],
    *args: Any,
    cost: Callable[[Any], float],
    processes: int | None = None,
) -> Callable[[], list[Any]]:
    """``function(jobs, *args)`` split among forked children, started now; the function
    returned waits for them (call it once) and gives one result per job, in order.

    ``function`` takes a list of jobs and returns one result per job, each depending on
    its job alone (so any split gives the same results). Jobs are dealt to the children
    largest ``cost`` first, each to the child with the least work so far, so one huge
    component does not wait behind many small ones. Until the results are collected this
    process can do other work, on a core the children leave idle once the smaller
    shares are done.

    Raises
    ------
    RuntimeError
        From the returned function: a child failed (its exception's type and message) or
        died.
    """
    processes = default_processes() if processes is None else processes
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if not jobs:
        return list
    processes = min(processes, len(jobs))
    shares: list[list[int]] = [[] for _ in range(processes)]
    load = [0.0] * processes
    for position in sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])):
        least = load.index(min(load))
        shares[least].append(position)
        load[least] += cost(jobs[position])
    running = [
        (share, Forked(function, [jobs[i] for i in share], *args)) for share in shares
    ]

    def collect() -> list[Any]:
        results: list[Any] = [None] * len(jobs)
        failures = []
        for share, pending in running:
            try:
                value = pending.result()
            except RuntimeError as error:
                failures.append(str(error))
                continue
            for position, result in zip(share, value, strict=True):
                results[position] = result
        if failures:
            raise RuntimeError("; ".join(failures))
        return results

    return collect


class Forked:
    """``function(*args)`` started in a forked child now; :meth:`result` waits for it.

    The child sees this process's memory as it was at the fork (nothing is copied or
    pickled on the way in); its result comes back pickled through a pipe.
    """

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child_main, args=(send, function, args), daemon=True
        )
        self._process.start()
        send.close()

    def result(self) -> Any:
        """The function's return value.

        Raises
        ------
        RuntimeError
            The function raised (its exception's type and message) or the child died.
        """
        try:
            ok, value = self._receive.recv()
        except EOFError:
            ok, value = False, "a child process died"
        finally:
            self._receive.close()
            self._process.join()
        if not ok:
            raise RuntimeError(f"{value} (exit code {self._process.exitcode})")
        return value


def _child_main(send: Any, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = (True, function(*args))
    except BaseException as error:  # any failure is reported to the parent, which raises
        result = (False, f"{type(error).__name__}: {error}")
    send.send(result)
    send.close()
