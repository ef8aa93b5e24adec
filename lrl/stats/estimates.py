"""Aggregate scores with stratified-bootstrap confidence intervals, all through rliable.

Scores are a ``runs x 1 task`` matrix per group. rliable 1.2 draws its bootstrap indices from numpy's global
generator (its ``random_state`` argument does not reach the resampling), so every estimate here first seeds that
generator with ``seed`` (and puts the caller's state back afterwards): the same runs, ``reps`` and ``seed`` give the
same intervals, and one group's interval does not depend on which other groups are in the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

CONFIDENCE = 0.95
logging.getLogger("absl").setLevel(logging.WARNING)  # rliable's "Calculating estimates for ..." on every call


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def interval(func: Callable[..., np.ndarray], scores: Any, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(point estimates, 2 x n interval) of ``func`` on one score matrix, or on a tuple of them (independent
    stratified bootstrap of each, for probability of improvement)."""
    from rliable import library as rly

    with seeded(seed):
        points, cis = rly.get_interval_estimates({"x": scores}, func, reps=reps,
                                                 confidence_interval_size=CONFIDENCE)
    return np.asarray(points["x"], float), np.asarray(cis["x"], float)


def aggregate_func(gap_threshold: float | None) -> tuple[list[str], Callable[[np.ndarray], np.ndarray]]:
    """Names and the function of the aggregate metrics: IQM, mean, median and, with a threshold, optimality gap."""
    from rliable import metrics

    names = ["iqm", "mean", "median"] + (["optimality_gap"] if gap_threshold is not None else [])

    def func(scores: np.ndarray) -> np.ndarray:
        # rliable's aggregate_median is the median across tasks of each task's mean over runs: with one task it is
        # the mean. Transposed (runs as "tasks"), it is the median across runs, which is what a report of one
        # environment means by median.
        values = [metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores), metrics.aggregate_median(scores.T)]
        if gap_threshold is not None:
            values.append(metrics.aggregate_optimality_gap(scores, gap_threshold))
        return np.array(values)

    return names, func


def aggregates(scores: np.ndarray, gap_threshold: float | None, reps: int, seed: int) -> dict[str, dict[str, Any]]:
    names, func = aggregate_func(gap_threshold)
    points, cis = interval(func, scores, reps, seed)
    return {name: {"value": float(points[i]), "ci": [float(cis[0, i]), float(cis[1, i])]}
            for i, name in enumerate(names)}


def iqm_curve(curves: np.ndarray, reps: int, seed: int) -> dict[str, list[float]]:
    """IQM across runs at each evaluation of a ``runs x 1 x evaluations`` array, with its interval."""
    from rliable import metrics

    def func(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores[..., j]) for j in range(scores.shape[-1])])

    points, cis = interval(func, curves, reps, seed)
    return {"iqm": points.tolist(), "ci_low": cis[0].tolist(), "ci_high": cis[1].tolist()}


def performance_profile(score_dict: dict[str, np.ndarray], tau: np.ndarray, reps: int,
                        seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fraction of runs with a score above each ``tau``, with intervals (rliable's score distributions)."""
    from rliable import library as rly

    profiles: dict[str, np.ndarray] = {}
    cis: dict[str, np.ndarray] = {}
    for label, scores in score_dict.items():
        with seeded(seed):
            p, c = rly.create_performance_profile({label: scores}, tau, reps=reps,
                                                  confidence_interval_size=CONFIDENCE)
        profiles[label], cis[label] = p[label], c[label]
    return profiles, cis


def probability_of_improvement(a: np.ndarray, b: np.ndarray, reps: int, seed: int) -> dict[str, Any]:
    """P(a run of A scores above a run of B), ties counting half, with its interval."""
    from rliable import metrics

    def func(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(x, y)])

    points, cis = interval(func, (a, b), reps, seed)
    return {"value": float(points[0]), "ci": [float(cis[0, 0]), float(cis[1, 0])]}
