"""``lrl report`` and ``lrl compare``: final scores and learning curves of several runs, with intervals.

A report groups runs (one ``lrl seeds`` sweep per group, other runs by recipe name), scores each run by its final
evaluation (the metric's value at its last logged clock), and gives per group IQM, mean, median and optimality gap
with 95 % stratified-bootstrap intervals, a performance profile, and IQM learning curves. See docs/statistics.md.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrl.stats import estimates
from lrl.stats.runs import EvalRun, Group, RunSource, StatsInputError, collect, group_runs, need_two, one_env, sort_key

log = logging.getLogger("lrl")

DEFAULT_METRIC = "eval/return_mean"
DEFAULT_REPS = 2000
DEFAULT_SEED = 0
# The range of an episode's return where it is fixed by the env: reward per step times the step limit.
KNOWN_BOUNDS: dict[str, tuple[float, float]] = {
    "CartPole-v0": (0.0, 200.0),
    "CartPole-v1": (0.0, 500.0),
    "Acrobot-v1": (-500.0, 0.0),
    "MountainCar-v0": (-200.0, 0.0),
    "Pendulum-v1": (-200 * (np.pi**2 + 0.1 * 8**2 + 0.001 * 2**2), 0.0),
}


@dataclass
class Scoring:
    """How final returns become scores: raw, or (x - low) / (high - low)."""

    low: float | None = None
    high: float | None = None
    gap_threshold: float | None = None  # in score units; None: the env's reward threshold (or 1.0 when normalised)

    @property
    def normalised(self) -> bool:
        return self.low is not None

    def score(self, x: Any) -> Any:
        if self.low is None or self.high is None:
            return np.asarray(x, float)
        return (np.asarray(x, float) - self.low) / (self.high - self.low)


def scoring(env_id: str, low: float | None, high: float | None, known_bounds: bool,
            gap_threshold: float | None) -> Scoring:
    if known_bounds and (low is not None or high is not None):
        raise StatsInputError("pass either --known-bounds or --min/--max, not both")
    if (low is None) != (high is None):
        raise StatsInputError("--min and --max go together (scores are (return - min) / (max - min))")
    if known_bounds:
        if env_id not in KNOWN_BOUNDS:
            raise StatsInputError(f"no known return bounds for {env_id} (known: {', '.join(KNOWN_BOUNDS)}); pass "
                                  "--min and --max")
        low, high = KNOWN_BOUNDS[env_id]
    if low is not None and high is not None and high <= low:
        raise StatsInputError(f"--max ({high}) must be above --min ({low})")
    out = Scoring(low, high)
    if gap_threshold is None:
        import gymnasium as gym

        try:
            threshold = gym.spec(env_id).reward_threshold
        except gym.error.Error:
            threshold = None
        if threshold is not None:
            gap_threshold = float(out.score(threshold))
        elif out.normalised:
            gap_threshold = 1.0
    out.gap_threshold = gap_threshold
    return out


def _matrix(runs: list[EvalRun], sc: Scoring) -> np.ndarray:
    return sc.score([r.final for r in runs])[:, None]  # runs x 1 task


def _curve(group: Group, sc: Scoring, reps: int, seed: int) -> dict[str, Any] | None:
    """IQM at each evaluation clock that every run of the group logged; clocks only some runs logged are dropped
    (and listed), since an IQM over a changing set of runs is no curve."""
    common = sorted(set.intersection(*(set(r.curve) for r in group.runs)))
    every = sorted(set().union(*(set(r.curve) for r in group.runs)))
    dropped = [s for s in every if s not in common]
    if dropped:
        log.warning("'%s': %d evaluation clocks not shared by every run are left out of its learning curve "
                    "(runs with different eval.every or budgets)", group.label, len(dropped))
    if not common:
        return None
    curves = np.stack([sc.score([r.curve[s] for s in common]) for r in group.runs])[:, None, :]
    return {"frames": common, **estimates.iqm_curve(curves, reps, seed), "dropped_frames": dropped}


def _tau(all_scores: np.ndarray, sc: Scoring) -> np.ndarray:
    lo, hi = float(all_scores.min()), float(all_scores.max())
    if sc.normalised:
        lo, hi = min(lo, 0.0), max(hi, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    return np.linspace(lo, hi, 101)


def build_report(refs: list[str], tracking_uri: str | None = None, metric: str = DEFAULT_METRIC,
                 reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED, low: float | None = None,
                 high: float | None = None, known_bounds: bool = False,
                 gap_threshold: float | None = None) -> dict[str, Any]:
    source = RunSource(tracking_uri, metric)
    runs = collect(source, refs)
    env_id = one_env(runs)
    sc = scoring(env_id, low, high, known_bounds, gap_threshold)
    groups = group_runs(source, runs)
    for g in groups:
        need_two(g.label, len(g.runs))
    parents = {(r.tracking_uri, r.parent_id) for r in runs}
    shared_parent = next(iter(parents)) if len(parents) == 1 and None not in next(iter(parents)) else None
    score_dict = {g.label: _matrix(g.runs, sc) for g in groups}
    tau = _tau(np.concatenate(list(score_dict.values())).ravel(), sc)
    profiles, profile_cis = estimates.performance_profile(score_dict, tau, reps, seed)
    out_groups = []
    for g in groups:
        finals = sorted({r.final_step for r in g.runs})
        if len(finals) > 1:
            log.warning("'%s': runs end at different clocks (%s); each is scored by its own last evaluation",
                        g.label, ", ".join(map(str, finals)))
        agg = estimates.aggregates(score_dict[g.label], sc.gap_threshold, reps, seed)
        out_groups.append({
            "label": g.label, "recipes": sorted({r.recipe for r in g.runs}), "parent_run_id": g.parent_id,
            "runs": [{"run_id": r.run_id, "seed": r.seed, "final_step": r.final_step, "final": r.final}
                     for r in g.runs],
            "scores": score_dict[g.label][:, 0].tolist(),
            "iqm": agg["iqm"], "mean": agg["mean"], "median": agg["median"],
            "optimality_gap": agg.get("optimality_gap"),
            "profile": {"fraction": profiles[g.label].tolist(), "ci_low": profile_cis[g.label][0].tolist(),
                        "ci_high": profile_cis[g.label][1].tolist()},
            "curve": _curve(g, sc, reps, seed),
        })
    return {
        "env": env_id, "metric": metric, "clock_unit": runs[0].clock_unit,
        "score_unit": "normalised score" if sc.normalised else "return",
        "normalisation": {"min": sc.low, "max": sc.high} if sc.normalised else None,
        "gap_threshold": sc.gap_threshold, "confidence": estimates.CONFIDENCE, "reps": reps, "seed": seed,
        "tracking_uri": runs[0].tracking_uri if shared_parent else None,
        "parent_run_id": shared_parent[1] if shared_parent else None,
        "performance_profile": {"tau": tau.tolist()},
        "groups": out_groups,
    }


def _ci(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['value']:.2f} [{entry['ci'][0]:.2f}, {entry['ci'][1]:.2f}]"


def format_report(report: dict[str, Any]) -> str:
    unit = report["score_unit"]
    norm = report["normalisation"]
    scale = f"normalised: (return - {norm['min']:g}) / ({norm['max']:g} - {norm['min']:g})" if norm else "raw returns"
    gap = report["gap_threshold"]
    lines = [f"{report['env']}: {report['metric']} at each run's final evaluation ({scale})",
             f"{report['confidence']:.0%} intervals: stratified bootstrap over runs, {report['reps']} reps, "
             f"seed {report['seed']}"]
    rows = [("group", "runs", f"IQM {unit}", "mean", "median",
             f"optimality gap (threshold {gap:g})" if gap is not None else "optimality gap")]
    for g in report["groups"]:
        rows.append((g["label"], str(len(g["runs"])), _ci(g["iqm"]), _ci(g["mean"]), _ci(g["median"]),
                     _ci(g["optimality_gap"]) if gap is not None else "- (pass --gap-threshold)"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def publish(report: dict[str, Any], json_path: Path | None, plots_dir: Path | None) -> list[Path]:
    """Write the JSON and plots where asked; when the runs share a parent run, log both (and the IQM) to it.
    Returns the files written outside a temporary directory."""
    written = []
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))
        written.append(json_path)
    parent = report["parent_run_id"]
    if plots_dir is None and parent is None:
        return written
    from lrl.stats.plots import write_plots

    with tempfile.TemporaryDirectory() as tmp:
        pngs = write_plots(report, plots_dir or Path(tmp))
        if plots_dir is not None:
            written += pngs
        if parent is not None:
            log_to_parent(report, pngs, Path(tmp))
    return written


def log_to_parent(report: dict[str, Any], pngs: list[Path], tmp: Path) -> None:
    """report.json and the plots under the parent run's ``report/`` artifacts, IQM and its interval as metrics.
    Never fatal: the numbers are already printed."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=report["tracking_uri"])
        run_id = report["parent_run_id"]
        path = tmp / "report.json"
        path.write_text(json.dumps(report, indent=1))
        for f in [path, *pngs]:
            client.log_artifact(run_id, str(f), artifact_path="report")
        iqm = report["groups"][0]["iqm"]
        for key, value in (("iqm", iqm["value"]), ("iqm_ci_low", iqm["ci"][0]), ("iqm_ci_high", iqm["ci"][1])):
            client.log_metric(run_id, f"report/{key}", value)
    except Exception as err:  # a tracking hiccup must not lose the report
        log.warning("could not log the report to parent run %s: %s", report["parent_run_id"], err)


def _side(source: RunSource, ref: str) -> list[EvalRun]:
    refs = [ref] if Path(ref).exists() or "," not in ref else [r for r in ref.split(",") if r.strip()]
    return collect(source, [r.strip() for r in refs])


def build_compare(a: str, b: str, tracking_uri: str | None = None, metric: str = DEFAULT_METRIC,
                  reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Probability that a run of A ends above a run of B (ties count half), and both IQMs, with intervals."""
    source = RunSource(tracking_uri, metric)
    runs_a, runs_b = _side(source, a), _side(source, b)
    env_id = one_env(runs_a + runs_b)
    need_two(a, len(runs_a))
    need_two(b, len(runs_b))
    sc = Scoring()
    sides = {}
    for name, ref, runs in (("a", a, runs_a), ("b", b, runs_b)):
        runs = sorted(runs, key=lambda r: (r.parent_id or "", *sort_key(r)))
        m = _matrix(runs, sc)
        sides[name] = {"ref": ref, "runs": [{"run_id": r.run_id, "seed": r.seed, "final": r.final} for r in runs],
                       "scores": m[:, 0].tolist(), "iqm": estimates.aggregates(m, None, reps, seed)["iqm"]}
    poi = estimates.probability_of_improvement(np.array(sides["a"]["scores"])[:, None],
                                               np.array(sides["b"]["scores"])[:, None], reps, seed)
    return {"env": env_id, "metric": metric, "confidence": estimates.CONFIDENCE, "reps": reps, "seed": seed,
            **sides, "probability_of_improvement": poi}


def format_compare(result: dict[str, Any]) -> str:
    a, b, poi = result["a"], result["b"], result["probability_of_improvement"]
    return "\n".join([
        f"{result['env']}: {result['metric']} at each run's final evaluation; {result['confidence']:.0%} intervals: "
        f"stratified bootstrap, {result['reps']} reps, seed {result['seed']}",
        f"A  {len(a['runs'])} runs  IQM {_ci(a['iqm'])}  ({a['ref']})",
        f"B  {len(b['runs'])} runs  IQM {_ci(b['iqm'])}  ({b['ref']})",
        f"P(A > B) = {_ci(poi)}",
    ])
