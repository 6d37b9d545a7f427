"""Privacy-utility fronts: which points no other beats, how much of the plane a front holds
(its hypervolume), and which points of one front dominate which of another.

A point is ``(name, leak, utility)``: leak is an identity leak in [0, 1] (lower is better),
utility an identification accuracy in [0, 1] (higher is better). The hypervolume of a set of
points is the area of the part of the plane between them and the reference point
(``leak = 1, utility = 0``, the worst corner) that at least one point dominates: one number
that grows when a front moves towards low leak and high utility, comparable between fronts
measured on the same axes and reference.
"""

from __future__ import annotations

import math

Point = tuple[str, float, float]
#: The worst corner of the plane: everything leaks, nothing is identified.
REFERENCE = (1.0, 0.0)


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` on both axes and better on one."""
    _, la, ua = a
    _, lb, ub = b
    return la <= lb and ua >= ub and (la < lb or ua > ub)


def _check(points: list[Point]) -> None:
    for name, leak, util in points:
        if not (math.isfinite(leak) and math.isfinite(util)):
            raise ValueError(f"front point {name!r}: leak {leak} and utility {util} must be finite")


def pareto_front(points: list[Point]) -> list[str]:
    """The names of the points no other point dominates, in the given order (a point with a
    missing figure, NaN, neither dominates nor is dominated)."""
    return [p[0] for p in points if not any(dominates(q, p) for q in points if q[0] != p[0])]


def hypervolume(points: list[Point], reference: tuple[float, float] = REFERENCE) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (leak_ref, utility_ref).

    Points on the wrong side of the reference (more leak or less utility) add nothing. The
    front's points, sorted by leak, each add the strip between their utility and the best
    utility of the points with less leak."""
    _check(points)
    leak_ref, util_ref = reference
    inside = sorted((leak, util) for _, leak, util in points if leak < leak_ref and util > util_ref)
    area, best_util = 0.0, util_ref
    for i, (leak, util) in enumerate(inside):
        best_util = max(best_util, util)
        next_leak = inside[i + 1][0] if i + 1 < len(inside) else leak_ref
        area += (next_leak - leak) * (best_util - util_ref)
    return area


def dominance(front: list[Point], others: list[Point]) -> dict[str, list[str]]:
    """For each point of ``front``: the names of the points of ``others`` it dominates."""
    _check(front + others)
    return {p[0]: [q[0] for q in others if dominates(p, q)] for p in front}


def covers(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` on both axes (weak dominance)."""
    return a[1] <= b[1] and a[2] >= b[2]


def weakly_dominates(front: list[Point], others: list[Point]) -> bool:
    """Every point of ``others`` is covered (at least as good on both axes) by a point of ``front``."""
    _check(front + others)
    return all(any(covers(p, q) for p in front) for q in others)


#: A point with its 95% intervals: ``(name, (leak_lo, leak_hi), (utility_lo, utility_hi))``.
IntervalPoint = tuple[str, tuple[float, float], tuple[float, float]]


def covers_within(a: IntervalPoint, b: IntervalPoint) -> bool:
    """``b`` is better than ``a`` on neither axis by more than the intervals allow: its leak
    interval is not wholly below ``a``'s, nor its utility interval wholly above. The reading of
    "at least as good" that one noisy measurement per point supports."""
    _, (a_leak_lo, _), (_, a_util_hi) = a
    _, (_, b_leak_hi), (b_util_lo, _) = b
    return not (b_leak_hi < a_leak_lo or b_util_lo > a_util_hi)


def weakly_dominates_within(front: list[IntervalPoint], others: list[IntervalPoint]) -> bool:
    """Every point of ``others`` is covered within the intervals by a point of ``front``. Both
    directions can hold at once: then the two fronts cannot be told apart."""
    return all(any(covers_within(p, q) for p in front) for q in others)


def best_at_utility(items: list, utility, leak, target: float, tolerance: float) -> tuple[object, bool]:
    """The benchmark's ``best-fixed`` rule: among ``items`` whose ``utility`` is at least
    ``target - tolerance``, the lowest ``leak`` (ties: more utility); ``(item, True)``. If none is
    that useful, the most useful item, ``(item, False)``."""
    eligible = [x for x in items if utility(x) >= target - tolerance]
    if not eligible:
        return max(items, key=utility), False
    return min(eligible, key=lambda x: (leak(x), -utility(x))), True
