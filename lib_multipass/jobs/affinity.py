"""Checkpoint affinity: which waiting job an idle worker takes next.

Loading a checkpoint is where a list's time goes (seconds to tens of seconds for SDXL), so a
worker takes the job that needs the fewest checkpoints it does not hold, starting with the
one it has loaded; among equals, a group of jobs no other worker is on (so idle workers spread
over the checkpoints instead of all loading the same), then the largest group. No worker ever
waits while jobs wait: affinity orders the work, it never holds it back. Placement of the
workers themselves, their resources and restarts are Ray's (or the hosts').
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    """The checkpoints a job loads, in order (the base's first)."""

    checkpoints: tuple[str, ...]

    @property
    def first(self) -> str:
        return self.checkpoints[0] if self.checkpoints else ""


def pick(
    waiting: Sequence[Need],
    held: Collection[str],
    loaded: str = "",
    others: Collection[str] = (),
) -> int:
    """The index in `waiting` of the job a worker holding `held` (with `loaded` current) takes
    next; `others` are the checkpoints the other busy workers hold or are running."""
    if not waiting:
        raise ValueError("no job is waiting")
    groups = Counter(n.first for n in waiting)
    taken = Counter(others)

    def cost(i: int) -> tuple[int, int, int, int, int]:
        need = waiting[i]
        new = len(set(need.checkpoints) - set(held))
        return (new, need.first != loaded, taken[need.first], -groups[need.first], i)

    return min(range(len(waiting)), key=cost)


def round_robin(count: int, workers: int) -> list[int]:
    """The baseline: job i to worker i mod n, whatever it needs."""
    return [i % workers for i in range(count)]
