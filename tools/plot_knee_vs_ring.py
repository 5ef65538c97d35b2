"""Overlay of the knee angle imuflow tracked on ``knee_tracking1`` and the RING reference trace.

Usage (after the commands of docs/calibration.md, "Real data", with the recorder on)::

    python tools/plot_knee_vs_ring.py /tmp/knee-tracked-*.mcap \\
        ../shared/data/movella_dot/knee_tracking1/ring_reference.npz -o knee_vs_ring.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.recording.session_reader import read_streams


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tracked", type=Path, help="session with the observer's chain.state")
    p.add_argument("ring", type=Path, help="ring_reference.npz (t, angle_deg)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    p.add_argument("--from-s", type=float, default=10.0, help="correlation from this time, s")
    args = p.parse_args()
    state = next(s for s in read_streams(args.tracked).values() if s.info.kind == "chain.state")
    t = (state.data["t_host"] - state.data["t_host"][0]) * 1e-9
    ring = np.load(args.ring)
    ours = np.interp(ring["t"], t, np.degrees(state.data["angle"][:, 0].astype(np.float64)))
    m = ring["t"] >= args.from_s
    corr = np.corrcoef(ours[m], ring["angle_deg"][m])[0, 1]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.plot(ring["t"], ring["angle_deg"], lw=1, label="RING (causal), total angle")
    ax.plot(ring["t"], ours, lw=1, label="imuflow: calibration + constraint observer")
    ax.axvspan(0, args.from_s, color="0.9", label="RING start-up (not compared)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("knee angle (deg)")
    ax.set_title(f"knee_tracking1: correlation {corr:.3f} after {args.from_s:g} s")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output} (correlation {corr:.3f})")


if __name__ == "__main__":
    main()
