"""Analysis by synthesis of a real recording: which of its signals move a model off.

A recording has no ground truth, but the constraint observer's estimate of it (the replay
graph with the calibration) is a motion the project's simulator can play back: the root's
orientation and its sensor's free acceleration (integrated twice, drift high-passed at
0.1 Hz) and every hinge's angle drive the chain, and the simulated IMUs (the calibration's
joint centres as their sites, DESIGN.md's sensor errors) give data whose truth is that motion.
Swapping one group of the synthetic channels for the recording's (one IMU's accelerometer,
or one gyroscope axis) and scoring MODEL on each shows which real signal carries what the
simulator lacks: a model's offset that appears only when a real channel goes in comes from
that channel. Chains with a free root and hinges only (the knee).

Writes DIR/synthetic.npz and DIR/recording.npz (its 'truth' is the constraint estimate, so
it scores how far MODEL moves from that estimate) and prints, per dataset and model, the
signed mean and the mean absolute hinge error after --from-s and in each --window (deg).

Run: ``python tools/resynthesize.py SESSION.mcap --calibration CAL.yaml --out-dir DIR
[--model models/knee.onnx] [--window walking=33:48]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml
from scipy.interpolate import CubicSpline
from scipy.signal import butter, sosfiltfilt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.calibration.calibration_file import load_joint_levers  # noqa: E402
from pipeline.evaluation.imu_dataset import ImuDataset  # noqa: E402
from pipeline.evaluation.node_eval import run_node  # noqa: E402
from pipeline.evaluation.observer_eval import OnnxObserverModel, evaluate  # noqa: E402
from pipeline.kinematics.chain import Chain, JointType, load_chain  # noqa: E402
from pipeline.kinematics.fk import rel_to_hinge  # noqa: E402
from pipeline.kinematics.imu_synth import (  # noqa: E402
    GRAVITY_MS2,
    ImuNoise,
    SimSettings,
    simulate,
)
from pipeline.kinematics.quaternion import np_qrotate  # noqa: E402
from pipeline.recording.session_reader import read_streams  # noqa: E402

RATE_HZ = 100.0    # configs/replay.yaml's sync grid
DRIFT_HZ = 0.1     # high-pass of the integrated velocity and position
SMOOTH_HZ = 12.0   # zero-phase low-pass of the estimated orientation and angles
AXES = "xyz"


def estimate(session: Path, calibration: Path, out_dir: Path) -> tuple[np.ndarray, ...]:
    """The replay graph on ``session`` with ``calibration``: calibrated frames acc (T, m, 3)
    m/s^2 and gyr rad/s (segment frames), the root's orientation (T, 4) w,x,y,z to earth and
    the chain's q_rel (T, n, 4), on the sync grid."""
    graph = yaml.safe_load((REPO / "configs/replay.yaml").read_text())
    graph["chain"] = str(REPO / graph["chain"])
    graph["nodes"] = [n for n in graph["nodes"] if n["id"] != "viewer"]
    params = {n["id"]: n.setdefault("params", {}) for n in graph["nodes"]}
    params["replay"].update(path=str(session.resolve()), speed=0, restamp=False)
    params["filter"]["calibration"] = str(calibration.resolve())
    params["observer"]["joint_centres"] = str(calibration.resolve())
    tracked = out_dir / "tracked.mcap"
    tracked.unlink(missing_ok=True)
    params["recorder"]["path"] = str(tracked)
    next(n for n in graph["nodes"] if n["id"] == "recorder")["inputs"]["in"].append(
        "filter/imu.frame")
    config = out_dir / "replay_resynthesize.yaml"
    config.write_text(yaml.safe_dump(graph))
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(config), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"resynthesize: the replay graph failed:\n{proc.stderr[-3000:]}")
    streams = {s.info.kind: s.data for s in read_streams(tracked).values()}
    frames, state, pose = streams["imu.frame"], streams["chain.state"], streams["chain.pose"]
    step_ns = float(np.median(np.diff(state["t_host"])))
    if abs(step_ns * RATE_HZ * 1e-9 - 1.0) > 1e-3:
        raise SystemExit(f"resynthesize: the replay graph's frames come every {step_ns / 1e6:.2f}"
                         f" ms; this tool expects {RATE_HZ:g} Hz (configs/replay.yaml's sync)")
    q_rel = state["q_rel"].astype(np.float64)
    q_rel[:, 0] = pose["quat"][:, 0]  # the root's orientation is the orientation node's
    return (frames["acc"].astype(np.float64), frames["gyr"].astype(np.float64), q_rel)


class PlayedBack:
    """The estimated motion as a simulator trajectory: q(t) (N, nq) in the chain's layout."""

    def __init__(self, chain: Chain, root_site: np.ndarray, acc_root_imu: np.ndarray,
                 q_rel: np.ndarray) -> None:
        t = np.arange(len(q_rel)) / RATE_HZ
        smooth = butter(2, SMOOTH_HZ, fs=RATE_HZ, output="sos")
        q_root = sosfiltfilt(smooth, _continuous(q_rel[:, 0]), axis=0)
        q_root /= np.linalg.norm(q_root, axis=1, keepdims=True)
        # the root sensor's acceleration in earth, integrated twice; its site back to the root
        a = np_qrotate(q_rel[:, 0], np.nan_to_num(acc_root_imu))
        a[:, 2] -= GRAVITY_MS2
        drift = butter(2, DRIFT_HZ, "highpass", fs=RATE_HZ, output="sos")
        v = sosfiltfilt(drift, np.cumsum(a, axis=0) / RATE_HZ, axis=0)
        p = sosfiltfilt(drift, np.cumsum(v, axis=0) / RATE_HZ, axis=0)
        p -= np_qrotate(q_root, np.broadcast_to(root_site, p.shape).copy())
        hinges = chain.hinge_bodies
        angles = np.stack([rel_to_hinge(q_rel[:, i], chain.rotations[i], chain.axes[i])
                           for i in hinges], axis=1)
        angles = sosfiltfilt(smooth, np.unwrap(angles, axis=0), axis=0)
        self.chain = chain
        self._p, self._q = CubicSpline(t, p), CubicSpline(t, q_root)
        self._a = CubicSpline(t, angles)
        self._hinge_q = [int(chain.q_start[i]) for i in hinges]

    def q(self, t: np.ndarray) -> np.ndarray:
        """Joint coordinates (N, nq) at times t (N,) s from the recording's first frame."""
        t = np.asarray(t, dtype=np.float64)  # the splines extrapolate the step h past the ends
        out = np.zeros((len(t), self.chain.nq))
        out[:, 0:3] = self._p(t)
        q = self._q(t)
        out[:, 3:7] = q / np.linalg.norm(q, axis=1, keepdims=True)
        out[:, self._hinge_q] = self._a(t)
        return out


def _continuous(q: np.ndarray) -> np.ndarray:
    """Quaternions (T, 4) with signs flipped so that neighbours lie on the same hemisphere."""
    flip = np.cumsum(np.r_[0, np.sum(q[1:] * q[:-1], axis=1) < 0]) % 2 == 1
    return np.where(flip[:, None], -q, q)


def calibrated_chain(chain: Chain, calibration: Path) -> Chain:
    """``chain`` with each IMU site where the calibration's joint centres put it (sites of
    joints found poorly, or of a file without joint centres, stay as the chain has them)."""
    levers, _ = load_joint_levers(calibration)
    position = {s.name: np.array(s.position, dtype=np.float64) for s in chain.imus}
    by_body = {s.body: s.name for s in chain.imus}
    for joint, (parent_arm, child_arm) in levers.items():
        body = chain.bodies[chain.index(joint)]
        position[by_body[body.parent]] = np.asarray(body.joint.offset) + parent_arm
        position[by_body[joint]] = np.asarray(child_arm)
    return replace(chain, imus=tuple(replace(s, position=tuple(float(v) for v in position[s.name]))
                                     for s in chain.imus))


def swaps(synthetic: ImuDataset, recording: ImuDataset) -> dict[str, ImuDataset]:
    """The synthetic set with one group of channels taken from the recording."""
    out = {}
    for k, imu in enumerate(synthetic.imus):
        groups = {f"{imu} acc": [0, 1, 2], f"{imu} gyr": [3, 4, 5],
                  **{f"{imu} gyr {AXES[a]}": [3 + a] for a in range(3)}}
        for name, cols in groups.items():
            x = synthetic.imu.copy()
            x[..., [6 * k + c for c in cols]] = recording.imu[..., [6 * k + c for c in cols]]
            out[f"synthetic, {name} recorded"] = replace(synthetic, imu=x)
    return out


def signed_errors(model: str, data: ImuDataset, chain: Chain) -> np.ndarray:
    """(T, n_hinge) signed hinge errors deg of ``model`` (ONNX file or constraint_observer)."""
    if model.endswith(".onnx"):
        q = evaluate(OnnxObserverModel(model), data, warmup_s=0.0).q_rel[0]
    else:
        q = run_node(model, data, progress=False)[0]
    hinges = chain.hinge_bodies
    est = np.stack([rel_to_hinge(q[:, i], chain.rotations[i], chain.axes[i]) for i in hinges], 1)
    true = np.stack([rel_to_hinge(data.q_rel[0, :, i].astype(np.float64), chain.rotations[i],
                                  chain.axes[i]) for i in hinges], 1)
    return (np.degrees(est - true) + 180.0) % 360.0 - 180.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("session", type=Path, help="imported recording (.mcap)")
    ap.add_argument("--calibration", type=Path, required=True, help="imuflow calibrate's file")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--model", action="append", default=[],
                    help="ONNX model to score (repeatable; default models/knee.onnx)")
    ap.add_argument("--window", action="append", default=[], metavar="NAME=T0:T1",
                    help="also report this stretch of the recording, s (repeatable)")
    ap.add_argument("--from-s", type=float, default=10.0, help="skip the start-up, s")
    ap.add_argument("--seed", type=int, default=7, help="the simulated sensor errors' seed")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    models = (args.model or [str(REPO / "models/knee.onnx")]) + ["constraint_observer"]
    chain_file = yaml.safe_load(args.calibration.read_text())["chain"]
    chain = load_chain(REPO / chain_file)
    if chain.bodies[0].joint.type != JointType.FREE or any(
            b.joint.type != JointType.HINGE for b in chain.bodies[1:]):
        raise SystemExit(f"resynthesize: {chain_file} must be a free root and hinges only")
    acc, gyr, q_rel = estimate(args.session, args.calibration, args.out_dir)
    sites = calibrated_chain(chain, args.calibration)
    root_imu = [s.body for s in sites.imus].index(chain.body_names[0])
    motion = PlayedBack(sites, np.array(sites.imus[root_imu].position), acc[:, root_imu], q_rel)
    n = len(q_rel)
    rec = simulate(sites, n / RATE_HZ, RATE_HZ, args.seed, ImuNoise(),
                   SimSettings(placement_jitter_m=0.0), motion=motion)
    common = dict(rate_hz=RATE_HZ, chain=chain_file, imus=chain.imu_names,
                  bodies=chain.body_names, seeds=np.array([-1]))
    syn = ImuDataset(imu=np.concatenate([rec.acc, rec.gyr], -1).reshape(1, n, -1),
                     q_rel=rec.q_rel[None].astype(np.float32), **common)
    real = ImuDataset(imu=np.nan_to_num(np.concatenate([acc, gyr], -1)).reshape(1, n, -1)
                      .astype(np.float32), q_rel=q_rel[None].astype(np.float32), **common)
    syn.save(args.out_dir / "synthetic.npz")
    real.save(args.out_dir / "recording.npz")
    t = np.arange(n) / RATE_HZ
    windows = {f"from {args.from_s:g} s": (args.from_s, t[-1] + 1)}
    for w in args.window:
        name, span = w.split("=")
        windows[name] = tuple(float(v) for v in span.split(":"))
    sets = {"recording (truth: the constraint estimate)": real, "synthetic": syn,
            **swaps(syn, real)}
    print("| data | model | " + " | ".join(f"{w}: signed / abs" for w in windows) + " |")
    print("|---|---|" + "---|" * len(windows))
    for name, data in sets.items():
        for model in models:
            e = signed_errors(model, data, chain)
            spans = [e[(t >= a) & (t < b)] for a, b in windows.values()]
            cells = [f"{x.mean():+.2f} / {np.abs(x).mean():.2f}" for x in spans]
            print(f"| {name} | {Path(model).name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
