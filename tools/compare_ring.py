"""Compare an imuflow observer model with the public RING estimator on a held-out dataset.

RING (Bachhuber et al., PyPI ``imt-ring``, JAX) is a pretrained recurrent graph network for
magnetometer-free inertial motion tracking of kinematic chains. It is **not** an imuflow
dependency: this script's RING part runs in a separate virtual environment, and nothing in
imuflow imports this file. Two stages, one command for both::

    python3.11 -m venv /tmp/ringenv
    /tmp/ringenv/bin/pip install imt-ring==1.7.1 jax==0.10.2 jaxlib==0.10.2 dm-haiku==0.0.17
    /tmp/ringenv/bin/pip install -e .      # imuflow's dependencies, for the script's imports
    python tools/train_observer.py heldout --problem arm3-sparse --sequences 32 \\
        --duration-s 60 --out HO.npz                     # in the repository's .venv
    taskset -c 1 nice -n 10 /tmp/ringenv/bin/python tools/compare_ring.py run HO.npz \\
        --model models/arm3-sparse.onnx

- ``predict`` (RING venv): runs RING over every sequence, one 60 s sequence per call, with
  one XLA thread, and writes its estimates, converted to imuflow's conventions, to an npz.
- ``score`` (repository .venv, needs onnxruntime and numba): runs the imuflow model through
  ``pipeline.evaluation.observer_eval.evaluate`` (exactly ``imuflow eval``) and scores RING's estimates
  with the same functions (``body_errors``: hinge-angle error for hinges, inclination error for
  the root), after the same warm-up, and prints the side-by-side table.
- ``run`` (RING venv): ``predict``, then ``score`` in the repository's venv (``--imuflow-python``).

Conventions found for imt-ring 1.7.1 (checked on held-out sequences; ``score`` repeats the
check on the first sequence and warns if it fails):

- Input ``X`` (batch, T, n_bodies, 9) per body: accelerometer specific force in m/s^2 (a sensor
  at rest reads +9.81 on its upward axis, as in imuflow), gyroscope in rad/s, both in the
  sensor frame, then the hinge axis (unit vector, body frame) of the joint to the parent; zeros
  for bodies without an IMU and for the root's axis. Sampling interval Ts = 1 / rate (100 Hz
  uses RING's 100 Hz parameter set). The sign of the hinge axis does not matter.
- Output (batch, T, n_bodies, 4) w,x,y,z: for a non-root body the body-to-parent quaternion,
  the same as imuflow's ``q_rel``; for the root the earth-to-body quaternion with heading
  removed, i.e. the conjugate of imuflow's root ``q_rel`` (converted here).
- ``ring.RING`` by default low-pass filters its output with a forward-backward (zero-phase,
  non-causal) 10 Hz filter. ``predict`` keeps both: the raw, causal output (``ring``) and the
  filtered one (``ring_lpf``), which needs the whole sequence and cannot run live.
- imt-ring 1.7.1's parameter pickles were written with an older JAX; current JAX rejects their
  ``named_shape`` field on unpickling. ``_patch_jax_unpickle`` drops that (always empty) field.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_MODEL = REPO / "models" / "arm3-sparse.onnx"
DEFAULT_OUT_DIR = Path("/tmp/imuflow-ring")
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
VARIANTS = {"ring": "RING, raw output (causal)",
            "ring_lpf": "RING default (10 Hz forward-backward output filter, non-causal)"}


class CompareError(Exception):
    """A user-facing failure: the message names the file and what is wrong."""


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _versions(*dists: str) -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def _load_heldout(path: Path):
    """The held-out dataset via pipeline.evaluation.imu_dataset (errors name the file and key)."""
    from pipeline.evaluation.imu_dataset import load_dataset

    try:
        return load_dataset(path)
    except (FileNotFoundError, ValueError) as exc:
        raise CompareError(f"held-out file: {exc}") from None


def _select(n: int, sequences: int | None) -> np.ndarray:
    return np.arange(n if sequences is None else min(n, sequences))


# ---------------------------------------------------------------- predict (RING venv)

def _patch_jax_unpickle() -> None:
    """Let current JAX unpickle arrays pickled by JAX versions whose avals had ``named_shape``."""
    import jax._src.array as jax_array

    orig = jax_array._reconstruct_array
    if getattr(orig, "_imuflow_patched", False):
        return

    def reconstruct(fun, args, arr_state, aval_state):
        aval_state = {k: v for k, v in aval_state.items() if k != "named_shape"}
        return orig(fun, args, arr_state, aval_state)

    reconstruct._imuflow_patched = True  # type: ignore[attr-defined]
    jax_array._reconstruct_array = reconstruct


def ring_inputs(data, chain) -> tuple[list[int], np.ndarray]:
    """RING's parent array and the per-body template (n_bodies, 9) with hinge axes filled in.

    Returns (lam, template); IMU columns are filled per sequence by ``ring_x``.
    """
    from pipeline.kinematics.chain import JointType

    if tuple(chain.body_names) != tuple(data.bodies):
        raise CompareError(f"held-out bodies {data.bodies} differ from chain {data.chain} "
                           f"bodies {chain.body_names}")
    lam = [int(p) for p in chain.parents]
    template = np.zeros((chain.n_bodies, 9), np.float32)
    for i, name in enumerate(chain.body_names):
        jt = JointType(int(chain.joint_types[i]))
        if lam[i] < 0:
            if jt != JointType.FREE:
                raise CompareError(f"{data.chain}: RING expects a free root, '{name}' is {jt.name}")
        elif jt == JointType.HINGE:
            template[i, 6:9] = chain.axes[i]  # axis is the same in joint and child body frame
        else:
            raise CompareError(f"{data.chain}: this comparison supports hinge joints below the "
                               f"root; '{name}' has a {jt.name} joint")
    sites = {s.name: s for s in chain.imus}
    for name in data.imus:
        site = sites.get(name)
        if site is None:
            raise CompareError(f"held-out IMU '{name}' is not an IMU site of {data.chain}")
        if not np.allclose(site.rotation, (1.0, 0.0, 0.0, 0.0), atol=1e-6):
            raise CompareError(f"{data.chain}: IMU '{name}' is mounted rotated {site.rotation}; "
                               "RING would estimate sensor-frame orientations, not supported here")
    bodies = [s.body for n in data.imus for s in [sites[n]]]
    if len(set(bodies)) != len(bodies):
        raise CompareError(f"{data.chain}: RING takes at most one IMU per body, got {bodies}")
    return lam, template


def ring_x(data, chain, template: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """RING input (len(idx), T, n_bodies, 9) float32 for sequences ``idx`` of ``data``."""
    x = np.repeat(np.repeat(template[None, None], len(idx), 0), data.imu.shape[1], 1)
    sites = {s.name: s for s in chain.imus}
    for k, name in enumerate(data.imus):
        b = chain.index(sites[name].body)
        x[:, :, b, :6] = data.imu[idx, :, 6 * k:6 * k + 6]  # acc m/s^2, gyr rad/s, sensor frame
    return x


def to_imuflow(q: np.ndarray, lam: list[int]) -> np.ndarray:
    """RING output (..., n, 4) -> imuflow q_rel: conjugate the root (earth->body -> body->earth)."""
    q = np.array(q, dtype=np.float32)
    for i, p in enumerate(lam):
        if p < 0:
            q[..., i, 1:] *= -1.0
    return q


def predict(args: argparse.Namespace) -> Path:
    """Run RING over the held-out sequences; write the predictions npz and return its path."""
    if args.threads is not None:
        flags = ONE_THREAD_XLA if args.threads == 1 else (
            f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}")
        os.environ["XLA_FLAGS"] = flags
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    try:
        import jax
    except ImportError:
        raise CompareError("jax is not installed: run 'predict' and 'run' in the RING venv "
                           "(see this script's docstring), not in imuflow's .venv") from None
    _patch_jax_unpickle()
    import ring

    from pipeline.kinematics.chain import load_chain

    data = _load_heldout(args.heldout)
    chain = load_chain(REPO / data.chain)
    lam, template = ring_inputs(data, chain)
    idx = _select(data.n_sequences, args.sequences)
    ts = 1.0 / data.rate_hz
    net = ring.RING(lam, ts, use_lpf=False, jit=True)
    lpf_hz = float(ring.ml._LPF_CUTOFF_FREQ)

    @jax.jit
    def lowpass(q):  # (T, n, 4) -> same, ring.RING's default output filter
        return jax.vmap(lambda qb: ring.maths.quat_lowpassfilter(
            qb, cutoff_freq=lpf_hz, samp_freq=data.rate_hz, filtfilt=True),
            in_axes=1, out_axes=1)(q)

    n, t_len = len(idx), data.imu.shape[1]
    raw = np.zeros((n, t_len, len(lam), 4), np.float32)
    lpf = np.zeros_like(raw)
    seconds = np.zeros(n)
    _log(f"RING {_versions('imt-ring')['imt-ring']} on {args.heldout}: {n} of "
         f"{data.n_sequences} sequences x {data.duration_s:.0f} s at {data.rate_hz:g} Hz, "
         f"lam {lam}, XLA_FLAGS='{os.environ.get('XLA_FLAGS', '')}'")
    t_all = time.perf_counter()
    for j, s in enumerate(idx):
        x = ring_x(data, chain, template, np.array([s]))
        t0 = time.perf_counter()
        y, _ = net.apply(x)
        y = np.asarray(y)  # waits for the computation
        seconds[j] = time.perf_counter() - t0
        raw[j] = y[0]
        lpf[j] = np.asarray(lowpass(y[0]))
        _log(f"  [{j + 1}/{n}] sequence {s} (seed {int(data.seeds[s])}): {seconds[j]:.2f} s"
             + (" (includes JIT compilation)" if j == 0 else ""))
    total = time.perf_counter() - t_all
    out = args.out or DEFAULT_OUT_DIR / f"{args.heldout.stem}_ring.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    from tools import machine_info

    meta = {
        "heldout": str(args.heldout), "sequences": idx.tolist(), "rate_hz": data.rate_hz,
        "lam": lam, "bodies": list(data.bodies), "imus": list(data.imus),
        "variants": VARIANTS, "lpf_cutoff_hz": lpf_hz,
        "seconds_per_sequence_first_incl_jit": float(seconds[0]),
        "seconds_per_sequence_median": float(np.median(seconds[1:] if n > 1 else seconds)),
        "total_s": total, "batch": 1,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "versions": _versions("imt-ring", "jax", "jaxlib", "dm-haiku", "numpy"),
        "machine": machine_info.machine(),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).as_posix()] + sys.argv),
        "conventions": "q_rel body->parent w,x,y,z (root: body->earth, heading-free); RING's "
                       "root output conjugated, others as output",
    }
    tmp = out.with_name(out.name + ".part.npz")
    np.savez(tmp, ring=to_imuflow(raw, lam), ring_lpf=to_imuflow(lpf, lam),
             seconds=seconds, sequences=idx, meta=np.str_(json.dumps(meta)))
    tmp.replace(out)
    _log(f"wrote {out}: median {meta['seconds_per_sequence_median']:.2f} s per "
         f"{data.duration_s:.0f} s sequence (first, with JIT: {seconds[0]:.2f} s), "
         f"total {total:.0f} s")
    return out


# ---------------------------------------------------------------- score (imuflow .venv)

def encode_like_card(card, chain, q_rel: np.ndarray) -> np.ndarray:
    """q_rel (..., n, 4), imuflow convention -> model outputs (..., n_out), card's encoding."""
    from pipeline.estimation.output_encoding import encode_outputs

    return encode_outputs(chain, [(o.body, o.encoding) for o in card.outputs], q_rel)


def _label(chain, body: str) -> str:
    from pipeline.kinematics.chain import JointType

    i = chain.index(body)
    if chain.parents[i] < 0:
        return f"{body} inclination"
    return f"{body} {JointType(int(chain.joint_types[i])).name.lower()}"


def convention_check(chain, q_est: np.ndarray, q_true: np.ndarray, k: int) -> list[str]:
    """Mean error (deg) of one sequence's estimate as converted vs conjugated, per body.

    Returns report lines; a line starting with 'WARNING' when the conjugate fits better.
    """
    from pipeline.evaluation.joint_errors import inclination_error_deg, rotation_error_deg
    from pipeline.kinematics.quaternion import np_qconj

    lines = []
    for i, body in enumerate(chain.body_names):
        fn = inclination_error_deg if chain.parents[i] < 0 else rotation_error_deg
        a = float(np.mean(fn(q_est[k:, i].astype(np.float64), q_true[k:, i])))
        b = float(np.mean(fn(np_qconj(q_est[k:, i].astype(np.float64)), q_true[k:, i])))
        tag = "WARNING: conjugate fits better, check the conventions: " if b < a else ""
        lines.append(f"{tag}{_label(chain, body)}: {a:.1f} deg as converted, {b:.1f} deg "
                     "conjugated")
    return lines


def _stats_row(label: str, est: str, s) -> str:
    return (f"| {label} | {est} | {s.mean_deg:.1f} | {s.rmse_deg:.1f} | {s.p50_deg:.1f} | "
            f"{s.p90_deg:.1f} | {s.p95_deg:.1f} | {s.p99_deg:.1f} | {s.max_deg:.1f} |")


def score(args: argparse.Namespace) -> int:
    """Score the imuflow model and RING's predictions on the same sequences; print the table."""
    try:
        from pipeline.evaluation.joint_errors import error_stats, truth_known
        from pipeline.evaluation.observer_eval import (
            OnnxObserverModel,
            body_errors,
            evaluate,
            model_input,
        )
        from pipeline.kinematics.chain import load_chain
    except ImportError as exc:
        raise CompareError(f"'score' needs imuflow's environment (onnxruntime, numba): {exc}; "
                           "run it with the repository's .venv python") from None
    from tools import machine_info

    data = _load_heldout(args.heldout)
    pred_path = args.pred or DEFAULT_OUT_DIR / f"{args.heldout.stem}_ring.npz"
    if not pred_path.exists():
        raise CompareError(f"{pred_path}: RING predictions not found; run 'predict' first")
    with np.load(pred_path, allow_pickle=False) as z:
        keys = ("ring", "ring_lpf", "seconds", "sequences", "meta")
        missing = [k for k in keys if k not in z.files]
        if missing:
            raise CompareError(f"{pred_path}: lacks key(s) {missing}; write it with 'predict'")
        preds = {v: z[v] for v in VARIANTS}
        ring_seconds, idx, meta = z["seconds"], z["sequences"], json.loads(str(z["meta"]))
    if meta["heldout"] != str(args.heldout) and Path(meta["heldout"]).name != args.heldout.name:
        _log(f"note: predictions were made from {meta['heldout']}, scoring against {args.heldout}")
    if int(idx.max(initial=-1)) >= data.n_sequences or preds["ring"].shape[1:3] != (
            data.imu.shape[1], len(data.bodies)):
        raise CompareError(f"{pred_path}: shape {preds['ring'].shape} does not fit "
                           f"{args.heldout} ({data.n_sequences} x {data.imu.shape[1]} samples, "
                           f"{len(data.bodies)} bodies)")
    sub = replace(data, imu=data.imu[idx], q_rel=data.q_rel[idx], seeds=data.seeds[idx])
    model = OnnxObserverModel(args.model, threads=1)
    card = model.card
    chain = load_chain(REPO / card.chain)
    k = round(args.warmup_s * data.rate_hz)

    ours = evaluate(model, sub, args.warmup_s)  # exactly `imuflow eval`
    s_ = sub.imu.shape[0]
    our_seconds = []
    for i in range(s_):  # timing: one 60 s sequence (a hybrid's prior included), batch 1
        t0 = time.perf_counter()
        model.run(model_input(card, chain, replace(sub, imu=sub.imu[i:i + 1])))
        our_seconds.append(time.perf_counter() - t0)

    q_true = sub.q_rel.astype(np.float64)
    check = convention_check(chain, preds["ring"][0], q_true[0], k)
    stats = {card.name: ours.stats}
    for v in VARIANTS:
        errs = body_errors(card, chain, encode_like_card(card, chain, preds[v]), sub.q_rel)
        stats[v] = {b: error_stats(e[:, k:], truth_known(sub.q_rel[:, k:, chain.index(b)]))
                    for b, e in errs.items()}
    per_seq = {card.name: {b: np.nanmean(np.abs(e[:, k:]), axis=1)
                           for b, e in ours.errors.items()}}
    errs = body_errors(card, chain, encode_like_card(card, chain, preds["ring"]), sub.q_rel)
    per_seq["ring"] = {b: np.nanmean(np.abs(e[:, k:]), axis=1) for b, e in errs.items()}

    names = {card.name: f"imuflow {card.name}", "ring": "RING (causal)",
             "ring_lpf": "RING default, filtered (non-causal)"}
    title = (f"{card.name} vs RING on {args.heldout.name}: {s_} sequences x "
             f"{sub.duration_s:.0f} s at {data.rate_hz:g} Hz, errors after {args.warmup_s:g} s "
             "warm-up, degrees")
    lines = [title, "",
             "| joint | estimator | mean | RMSE | p50 | p90 | p95 | p99 | max |",
             "|---|---|---|---|---|---|---|---|---|"]
    for o in card.outputs:
        for key, st in stats.items():
            lines.append(_stats_row(_label(chain, o.body), names[key], st[o.body]))
    ring_med = float(np.median(ring_seconds[1:] if len(ring_seconds) > 1 else ring_seconds))
    lines += ["", f"| time per {sub.duration_s:.0f} s sequence, 1 CPU thread, batch 1 | seconds |",
              "|---|---|",
              (f"| imuflow {card.name} (onnxruntime, one session.run per sequence) | "
               f"{np.median(our_seconds):.3f} |"),
              (f"| RING (JAX jit, one apply per sequence; first call incl. compilation "
               f"{ring_seconds[0]:.1f} s) | {ring_med:.2f} |"), ""]
    wins = {o.body: int(np.sum(per_seq["ring"][o.body] < per_seq[card.name][o.body]))
            for o in card.outputs}
    lines.append("sequences where RING (causal) has the lower mean error: "
                 + ", ".join(f"{_label(chain, b)} {w}/{s_}" for b, w in wins.items()))
    lines.append(f"convention check, RING on sequence {int(idx[0])} (mean rotation/inclination "
                 "error): " + "; ".join(check))
    print("\n".join(lines))
    if any(c.startswith("WARNING") for c in check):
        _log("WARNING: RING's output convention check failed; the table is not trustworthy")
    if args.json:
        result = {
            "bench": "compare_ring", "heldout": str(args.heldout), "model": str(args.model),
            "sha256": card.sha256, "sequences": idx.tolist(), "warmup_s": args.warmup_s,
            "per_joint": {names[key]: {b: s.as_dict() for b, s in st.items()}
                          for key, st in stats.items()},
            "per_sequence_mean_deg": {names[key]: {b: np.round(v, 3).tolist() for b, v in d.items()}
                                      for key, d in per_seq.items()},
            "seconds_per_sequence": {"imuflow": float(np.median(our_seconds)),
                                     "ring_median": ring_med,
                                     "ring_first_incl_jit": float(ring_seconds[0])},
            "convention_check": check, "ring_run": meta,
            "machine": machine_info.machine("numpy", "onnxruntime"),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        _log(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------- run (both)

def run(args: argparse.Namespace) -> int:
    """predict here (RING venv), then score with imuflow's python."""
    pred = predict(args)
    py = args.imuflow_python
    if not Path(py).exists():
        raise CompareError(f"{py}: imuflow's python not found; pass --imuflow-python, or run "
                           f"'score' yourself with --pred {pred}")
    cmd = [str(py), str(Path(__file__).resolve()), "score", str(args.heldout), "--pred", str(pred),
           "--model", str(args.model), "--warmup-s", str(args.warmup_s)]
    if args.json:
        cmd += ["--json", str(args.json)]
    _log("scoring: " + " ".join(shlex.quote(c) for c in cmd))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    return subprocess.run(cmd, check=False, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Compare an imuflow observer with RING (imt-ring) on a held-out dataset. "
                    "'predict' and 'run' need the RING venv, 'score' imuflow's .venv; see the "
                    "module docstring for the setup.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("heldout", type=Path, help="held-out dataset .npz (python "
                       "tools/train_observer.py heldout ...; format pipeline/evaluation/imu_dataset.py)")
        p.add_argument("--warmup-s", type=float, default=5.0,
                       help="seconds skipped per sequence before statistics (default 5)")

    def ring_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, help="predictions npz (default "
                       f"{DEFAULT_OUT_DIR}/HELDOUT-STEM_ring.npz)")
        p.add_argument("--sequences", type=int, help="only the first N sequences (default all)")
        p.add_argument("--threads", type=int, default=1, help="XLA CPU threads (default 1; sets "
                       "XLA_FLAGS); combine with taskset -c CPU to pin the process")

    def score_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                       help="imuflow ONNX model with its card (default "
                            f"{DEFAULT_MODEL.relative_to(REPO)})")
        p.add_argument("--json", type=Path,
                       help="also write all figures, machine and versions here")

    p = sub.add_parser("predict", help="run RING (in the RING venv), write its predictions")
    common(p)
    ring_opts(p)
    p = sub.add_parser("score", help="score the model and RING's predictions (in imuflow's .venv)")
    common(p)
    p.add_argument("--pred", type=Path, help="predictions npz from 'predict' (default "
                   f"{DEFAULT_OUT_DIR}/HELDOUT-STEM_ring.npz)")
    score_opts(p)
    p = sub.add_parser("run", help="predict (RING venv), then score with imuflow's python")
    common(p)
    ring_opts(p)
    score_opts(p)
    p.add_argument("--imuflow-python", type=Path, default=REPO / ".venv" / "bin" / "python",
                   help="python of imuflow's environment for the scoring stage "
                        "(default REPO/.venv/bin/python)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "predict":
            predict(args)
            return 0
        if args.cmd == "score":
            return score(args)
        return run(args)
    except CompareError as exc:
        print(f"compare_ring: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
