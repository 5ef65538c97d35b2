"""Side-by-side curves of several runs (e.g. the same recipe with different loss / beta)."""

from __future__ import annotations

import json
from pathlib import Path


def load_log(run_dir: Path) -> tuple[dict, list[dict]]:
    """A run's config.json and its log.jsonl records."""
    cfg = json.loads((run_dir / "config.json").read_text())
    log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x.strip()]
    return cfg, log


def compare_runs(run_dirs: list[Path], out: Path) -> str:
    """PNG of loss and validation p50/p90/p99 (deg) per epoch for each run; returns a text table."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    rows = [(f"{'run':<28}{'loss':>14}{'beta':>6}{'epochs':>7}{'mean':>8}{'p50':>8}{'p90':>8}"
            f"{'p95':>8}{'p99':>8}   (last epoch, validation, deg)")]
    for rd in run_dirs:
        cfg, log = load_log(Path(rd))
        label = f"{Path(rd).name}: {cfg['loss']} b={cfg['beta']:g}"
        ep = [r["epoch"] for r in log]
        axes[0].plot(ep, [r["loss"] for r in log], label=label)
        for ax, key in zip(axes[1:], ("val_p50_deg", "val_p90_deg", "val_p99_deg")):
            ax.plot(ep, [r[key] for r in log], label=label)
        last = log[-1]
        rows.append(f"{Path(rd).name:<28}{cfg['loss']:>14}{cfg['beta']:>6g}{last['epoch']:>7}"
                    f"{last['val_mean_deg']:8.2f}{last['val_p50_deg']:8.2f}{last['val_p90_deg']:8.2f}"
                    f"{last['val_p95_deg']:8.2f}{last['val_p99_deg']:8.2f}")
    for ax, title in zip(axes, ("training loss (rad)", "val p50 (deg)", "val p90 (deg)",
                                "val p99 (deg)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return "\n".join(rows)
