"""PNG plots of a report with rliable's plotting functions (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

AGGREGATES_PNG = "aggregates.png"
PROFILE_PNG = "performance_profile.png"
CURVES_PNG = "learning_curves.png"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(labels: list[str]) -> dict[str, Any]:
    import seaborn as sns

    return dict(zip(labels, sns.color_palette("colorblind", len(labels)), strict=True))


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """aggregates.png (IQM, mean, median, optimality gap with intervals), performance_profile.png and, where the
    groups have aligned evaluations, learning_curves.png. Returns the files written."""
    from rliable import plot_utils

    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = report["groups"]
    labels = [g["label"] for g in groups]
    colors = _colors(labels)
    unit = report["score_unit"]
    written = []

    names = [n for n in ("iqm", "mean", "median", "optimality_gap") if groups[0].get(n) is not None]
    titles = {"iqm": "IQM", "mean": "Mean", "median": "Median", "optimality_gap": "Optimality gap"}
    points = {g["label"]: np.array([g[n]["value"] for n in names]) for g in groups}
    cis = {g["label"]: np.array([[g[n]["ci"][0] for n in names], [g[n]["ci"][1] for n in names]]) for g in groups}
    fig, _ = plot_utils.plot_interval_estimates(points, cis, metric_names=[titles[n] for n in names],
                                                algorithms=labels, colors=colors, xlabel=unit,
                                                row_height=0.8, xlabel_y_coordinate=0.11 - 0.6 / (0.8 * len(labels)))
    written.append(_save(plt, fig, out_dir / AGGREGATES_PNG, tight=False))

    tau = np.asarray(report["performance_profile"]["tau"])
    profiles = {g["label"]: np.asarray(g["profile"]["fraction"]) for g in groups}
    profile_cis = {g["label"]: np.array([g["profile"]["ci_low"], g["profile"]["ci_high"]]) for g in groups}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, tau, performance_profile_cis=profile_cis, colors=colors, ax=ax,
                                         xlabel=rf"{unit} ($\tau$)", labelsize="large", ticklabelsize="large")
    ax.legend([plt.Line2D([0], [0], color=colors[lb]) for lb in labels], labels, loc="upper right", fontsize="small")
    written.append(_save(plt, fig, out_dir / PROFILE_PNG))

    curved = [g for g in groups if g.get("curve")]
    if curved:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for g in curved:
            c = g["curve"]
            plot_utils.plot_sample_efficiency_curve(np.asarray(c["frames"]), {g["label"]: np.asarray(c["iqm"])},
                                                    {g["label"]: np.array([c["ci_low"], c["ci_high"]])},
                                                    algorithms=[g["label"]], colors=colors, ax=ax,
                                                    xlabel=f"environment {report['clock_unit']}",
                                                    ylabel=f"IQM {unit}", labelsize="large", ticklabelsize="large")
        ax.legend([plt.Line2D([0], [0], color=colors[g["label"]]) for g in curved], [g["label"] for g in curved],
                  loc="lower right", fontsize="small")
        written.append(_save(plt, fig, out_dir / CURVES_PNG))
    return written


def _save(plt: Any, fig: Any, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
