"""Knee angle tracked on ``knee_tracking1`` by imuflow, over the RING reference trace.

Usage, with the CSV ``imuflow track`` writes (README, "From a recording to results") or a
session recorded by ``configs/replay.yaml`` (docs/calibration.md, "Real data")::

    python tools/plot_knee_vs_ring.py knee.csv [rnn.csv ...] \\
        --ring ../shared/data/movella_dot/knee_tracking1/ring_reference.npz -o knee.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.recording.session_reader import read_streams


def knee_angle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(t s from the first frame, knee angle deg) from a track CSV or a session's chain.state."""
    if path.suffix.lower() == ".csv":
        csv = np.genfromtxt(path, delimiter=",", names=True)
        return csv["time_s"], csv["shank_angle_deg"]
    state = next(s for s in read_streams(path).values() if s.info.kind == "chain.state").data
    return ((state["t_host"] - state["t_host"][0]) * 1e-9,
            np.degrees(state["angle"][:, 0].astype(np.float64)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tracked", type=Path, nargs="+",
                   help="CSV from `imuflow track` or a session with chain.state")
    p.add_argument("--ring", type=Path, required=True, help="ring_reference.npz (t, angle_deg)")
    p.add_argument("--label", action="append", default=[],
                   help="legend label per tracked file, in order (default: file name)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    p.add_argument("--from-s", type=float, default=10.0, help="correlation from this time, s")
    args = p.parse_args()
    ring = np.load(args.ring)
    m = ring["t"] >= args.from_s
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.plot(ring["t"], ring["angle_deg"], lw=1, color="0.35", label="RING (causal), total angle")
    for i, path in enumerate(args.tracked):
        t, angle = knee_angle(path)
        ours = np.interp(ring["t"], t, angle)
        corr = np.corrcoef(ours[m], ring["angle_deg"][m])[0, 1]
        label = args.label[i] if i < len(args.label) else path.name
        ax.plot(t, angle, lw=1, label=f"{label} (correlation {corr:.3f})")
        print(f"{path}: correlation with RING after {args.from_s:g} s: {corr:.3f}")
    ax.axvspan(0, args.from_s, color="0.92", label="RING start-up (not compared)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("knee angle (deg)")
    ax.set_title("knee_tracking1 (Movella DOT, 60 Hz): knee angle from `imuflow track`")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
