"""A held-out set made by another public simulator: RING's random chain motion generator.

Every imuflow model is trained on the project's own generator (``pipeline.kinematics.motion``
and ``sim_imu``). Issue 14 judges models on sets from other simulators; this script makes one
with the RCMG of the public RING package (Bachhuber et al., PyPI ``imt-ring``; JAX), which
simulates its own motion (random joint trajectories over the whole range, the free root at
any orientation and up to +-2.5 m away), its own IMU model (finite differences of the link
poses, low-pass filtered, RING's noise and bias levels: acc noise 0.048 m/s^2 and bias up to
0.5 m/s^2, gyro noise 0.7 deg/s and bias up to 3 deg/s per axis) and none of imuflow's code.

RING is not an imuflow dependency: this script runs in a separate virtual environment
(as ``tools/compare_ring.py``) and writes the dataset ``.npz`` that ``imuflow eval`` reads
(``pipeline/evaluation/imu_dataset.py``; written here with numpy alone)::

    python3.11 -m venv /tmp/ringenv
    /tmp/ringenv/bin/pip install imt-ring==1.7.1 jax==0.10.2 jaxlib==0.10.2 dm-haiku==0.0.17
    /tmp/ringenv/bin/pip install -e .      # for tools/compare_ring.py in the same venv
    /tmp/ringenv/bin/python tools/ring_simulator_set.py --chain configs/chains/arm3.yaml \\
        --imus seg1 seg3 --sequences 32 --out RINGSIM.npz
    imuflow eval models/arm3-sparse.onnx RINGSIM.npz          # in the repository's .venv
    imuflow eval constraint_observer RINGSIM.npz

The chain file is translated into RING's XML: a free root and hinges about a body axis
(+-x, +-y, +-z), with the chain's offsets, and one rigidly attached IMU per named site at its
position, sensor frame aligned with the segment (a mounting rotation other than identity is
refused). Hinges with limits move within them: RING's hinge motion starts at the middle of
the range and stays within half its width of it (``ang0``, ``rom_halfsize`` for that joint
type); hinges with limits wider than +-170 deg move freely, as RING's do. The sequences are
split evenly over RING's motion configurations (``--configs``; its registered names:
``standard``, ``expFast``, ``expSlow``, ``hinUndHer``, ...).

Truth: RING's link transforms ``x.rot`` rotate earth vectors into the link frame
(``maths.rotate(v, q) = q v q*``), so imuflow's body-to-earth quaternion is their conjugate
and a body's ``q_rel`` (body to parent) is ``rot_parent * conj(rot_body)``. ``--check`` writes
noise-free data from unfiltered sensors and verifies that convention against the gyroscope
RING simulated.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ("standard", "expFast", "expSlow", "hinUndHer")
AXES = {(1, 0, 0): "rx", (0, 1, 0): "ry", (0, 0, 1): "rz"}
FREE_RANGE_RAD = math.radians(170)  # hinge limits wider than this move freely


class RingSetError(Exception):
    """A user-facing failure: the message names the file, the field and the fix."""


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in v)


def chain_xml(chain_path: Path, imus: list[str], dt: float) -> tuple[str, dict]:
    """RING's XML for the chain file's bodies and the IMU sites ``imus``; also, by body name,
    each hinge's RING joint type and its limits in RING's angle (rad; a hinge about -y is
    RING's ``ry`` with the angle negated)."""
    doc = yaml.safe_load(chain_path.read_text())
    bodies = doc["bodies"]
    sites = {s["name"]: s for s in doc.get("imus", [])}
    hinges: dict[str, dict] = {}
    children: dict[str | None, list[dict]] = {}
    for b in bodies:
        children.setdefault(b.get("parent"), []).append(b)
    roots = children.get(None, [])
    if len(roots) != 1 or roots[0]["joint"]["type"] != "free":
        raise RingSetError(f"{chain_path}: bodies: RING's set needs one free root body")
    for name in imus:
        if name not in sites:
            raise RingSetError(f"{chain_path}: imus: no IMU site {name!r} "
                               f"(sites: {', '.join(sites)})")
        rot = np.asarray(sites[name].get("rotation", [1, 0, 0, 0]), float)
        if not np.allclose(rot, [1, 0, 0, 0]):
            raise RingSetError(f"{chain_path}: imus.{name}.rotation: RING's set puts the "
                               "sensor frame on the segment frame; use a chain with "
                               "rotation [1, 0, 0, 0]")

    def body_xml(b: dict, indent: str) -> str:
        joint = b["joint"]
        kind = joint["type"]
        attrs = f'name="{b["name"]}"'
        if kind == "free":
            attrs += ' joint="free" damping="5 5 5 25 25 25"'
        elif kind == "hinge":
            axis = np.asarray(joint["axis"], float)
            key = tuple(int(round(abs(a))) for a in axis)
            if key not in AXES or not np.isclose(np.abs(axis).sum(), 1.0):
                raise RingSetError(f"{chain_path}: bodies.{b['name']}.joint.axis: RING's set "
                                   "takes hinges about a body axis (+-x, +-y, +-z)")
            lo, hi = (float(v) for v in joint.get("limits", [-math.pi, math.pi]))
            # RING's hinge angle turns the child about the body axis as imuflow's does
            # (q_rel = conj of its joint rotation, ``maths.quat_rot_axis`` negating the
            # angle), so only a negative axis flips the limits
            hinges[b["name"]] = {"ring_type": AXES[key],
                                 "ring_limits": (lo, hi) if axis.sum() > 0 else (-hi, -lo)}
            attrs += f' joint="{AXES[key]}" damping="3"'
            attrs += f' pos="{_fmt(joint.get("offset", [0, 0, 0]))}"'
        else:
            raise RingSetError(f"{chain_path}: bodies.{b['name']}.joint.type: RING's set "
                               f"takes free and hinge joints, not {kind!r}")
        inner = [f'{indent}  <geom type="box" mass="1" pos="0 0 0" dim="0.1 0.05 0.05"/>']
        for name in imus:
            if sites[name]["body"] == b["name"]:
                inner.append(f'{indent}  <body name="imu_{name}" joint="frozen" '
                             f'pos="{_fmt(sites[name].get("position", [0, 0, 0]))}">')
                inner.append(f'{indent}    <geom type="box" mass="0.1" dim="0.02 0.02 0.01"/>')
                inner.append(f"{indent}  </body>")
        for child in children.get(b["name"], []):
            inner.append(body_xml(child, indent + "  "))
        return f"{indent}<body {attrs}>\n" + "\n".join(inner) + f"\n{indent}</body>"

    xml = (f'<x_xy model="{doc.get("name", "chain")}">\n'
           f'  <options gravity="0 0 9.81" dt="{dt}"/>\n  <worldbody>\n'
           f"{body_xml(roots[0], '    ')}\n  </worldbody>\n</x_xy>\n")
    return xml, hinges


def motion_configs(names: list[str], hinges: dict, duration_s: float):
    """RING's registered motion configurations, with hinges kept within the chain's limits
    (module docstring)."""
    from dataclasses import replace

    from ring.algorithms.jcalc import MotionConfig

    by_type: dict[str, tuple[float, float]] = {}
    for name, h in hinges.items():
        lo, hi = h["ring_limits"]
        if hi - lo >= 2 * FREE_RANGE_RAD:
            continue
        if by_type.setdefault(h["ring_type"], (lo, hi)) != (lo, hi):
            raise RingSetError(f"hinge {name}: RING's set keeps hinges within limits only "
                               f"when all {h['ring_type']} hinges share them (RING's "
                               "motion configuration is per joint type)")
    overwrites = {kind: {"ang0_min": 0.5 * (lo + hi), "ang0_max": 0.5 * (lo + hi),
                         "rom_halfsize": 0.5 * (hi - lo)}
                  for kind, (lo, hi) in by_type.items()}
    return [replace(MotionConfig.from_register(name), T=duration_s,
                    joint_type_specific_overwrites=overwrites) for name in names]


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of w,x,y,z quaternions (..., 4)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def conj(q: np.ndarray) -> np.ndarray:
    """Conjugate of w,x,y,z quaternions."""
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def q_rel_from_rot(rot: np.ndarray, parents: list[int]) -> np.ndarray:
    """imuflow's q_rel (T, n, 4) body to parent (root: to earth) from RING's link rotations
    (T, n, 4), earth vectors into link frames."""
    q_b2e = conj(rot)
    out = np.empty_like(q_b2e)
    for i, p in enumerate(parents):
        out[:, i] = q_b2e[:, i] if p < 0 else quat_mul(rot[:, p], q_b2e[:, i])
    out *= np.where(out[..., :1] < 0, -1.0, 1.0)  # w >= 0, as the simulator writes it
    return out


def _patch_jnp_clip() -> None:
    """imt-ring 1.7.1 calls ``jnp.clip(x, a_min=..., a_max=...)``, keywords current JAX
    removed (``min``/``max`` now); map them."""
    import jax.numpy as jnp

    clip = jnp.clip
    if getattr(clip, "_ring_set_patched", False):
        return

    def patched(x, *args, a_min=None, a_max=None, **kwargs):
        if a_min is not None:
            kwargs["min"] = a_min
        if a_max is not None:
            kwargs["max"] = a_max
        return clip(x, *args, **kwargs)

    patched._ring_set_patched = True
    jnp.clip = patched


def generate(chain_path: Path, imus: list[str], n: int, duration_s: float, rate_hz: float,
             config_names: list[str], seed: int, noisy: bool,
             imu_options: dict | None = None) -> dict:
    """``n`` sequences from RING's RCMG as the dataset file's arrays (module docstring)."""
    _patch_jnp_clip()
    import ring
    from ring.algorithms.generator import finalize_fns

    if n % len(config_names):
        raise RingSetError(f"--sequences {n} must be a multiple of the {len(config_names)} "
                           "motion configurations (--configs)")
    xml, hinges = chain_xml(chain_path, imus, 1.0 / rate_hz)
    sys_ = ring.System.create(xml)
    chain_bodies = yaml.safe_load(chain_path.read_text())["bodies"]
    bodies = [b["name"] for b in chain_bodies]
    idx = [sys_.name_to_idx(b) for b in bodies]
    parents = [-1 if b.get("parent") is None else bodies.index(b["parent"])
               for b in chain_bodies]
    imu_kwargs = {**finalize_fns._default_imu_kwargs, "noisy": noisy, **(imu_options or {})}

    def finalize(key, q, x, sys_x):
        import jax

        X = {}
        for name in imus:
            key, consume = jax.random.split(key)
            X[name] = ring.algorithms.sensors.imu(
                xs=x.take(sys_x.name_to_idx(f"imu_{name}"), 1), gravity=sys_x.gravity,
                dt=sys_x.dt, key=consume, **imu_kwargs)
        return X, {"rot": x.rot[:, idx]}

    gen = ring.RCMG(sys_, motion_configs(config_names, hinges, duration_s),
                    finalize_fn=finalize, disable_tqdm=False)
    data = gen.to_list(n, seed=seed)
    T = int(round(duration_s * rate_hz))
    imu = np.stack([np.concatenate([np.concatenate([X[s]["acc"], X[s]["gyr"]], axis=-1)
                                    for s in imus], axis=-1)[:T] for X, _ in data])
    q_rel = np.stack([q_rel_from_rot(np.asarray(y["rot"], float), parents)[:T]
                      for _, y in data])
    settings = {"simulator": "ring.RCMG", "imt_ring": ring.__version__ if hasattr(
        ring, "__version__") else _version("imt-ring"), "configs": config_names,
        # one RCMG call makes one sequence per configuration, in their order
        "config_of_sequence": [config_names[i % len(config_names)] for i in range(n)],
        "seed": seed, "noisy": noisy, "imu_kwargs": {k: v for k, v in imu_kwargs.items()},
        "hinges": hinges, "xml": xml}
    return {"imu": imu.astype(np.float32), "q_rel": q_rel.astype(np.float32),
            "rate_hz": np.float64(rate_hz), "chain": np.str_(_repo_relative(chain_path)),
            "imus": np.array(imus), "bodies": np.array(bodies),
            "seeds": np.full(n, seed, dtype=np.int64), "settings": np.str_(json.dumps(settings))}


def _version(dist: str) -> str:
    from importlib import metadata

    return metadata.version(dist)


def _repo_relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def check_conventions(arrays: dict) -> dict:
    """On noise-free, unfiltered data: the root IMU's gyroscope (RING: the rotation from one
    sample to the next) against the truth's rate over the same step, rms rad/s, for the truth
    as converted and for its conjugate (the other convention); the first is near 0."""
    imus, bodies = list(arrays["imus"]), list(arrays["bodies"])
    dt = 1.0 / float(arrays["rate_hz"])
    name = imus[0]  # the root IMU: its q_rel is body to earth
    if bodies.index(name) != 0:
        raise RingSetError(f"--check needs the root's IMU first in --imus (got {name})")
    gyr = arrays["imu"][:, :-1, 3:6].astype(float)
    out = {"imu": name, "gyro_rms_rad_s": float(np.sqrt(np.mean(np.sum(gyr ** 2, -1))))}
    for label, q in (("as_converted", arrays["q_rel"][:, :, 0].astype(float)),
                     ("conjugated", conj(arrays["q_rel"][:, :, 0].astype(float)))):
        dq = quat_mul(conj(q[:, :-1]), q[:, 1:])
        angle = 2.0 * np.arctan2(np.linalg.norm(dq[..., 1:], axis=-1), np.abs(dq[..., 0]))
        axis = dq[..., 1:] * np.sign(dq[..., :1]) / np.maximum(
            np.linalg.norm(dq[..., 1:], axis=-1, keepdims=True), 1e-12)
        err = gyr - axis * (angle / dt)[..., None]
        out[f"gyro_rms_error_{label}_rad_s"] = float(np.sqrt(np.mean(np.sum(err ** 2, -1))))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chain", type=Path, default=REPO / "configs/chains/arm3.yaml",
                   help="imuflow chain file (free root, hinges about body axes)")
    p.add_argument("--imus", nargs="+", default=["seg1", "seg3"],
                   help="IMU sites of the chain, in the model's input order")
    p.add_argument("--sequences", type=int, default=32)
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--rate-hz", type=float, default=100.0)
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                   help="RING motion configurations, sequences split evenly over them")
    p.add_argument("--seed", type=int, default=4_000_000)
    p.add_argument("--imu", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of RING's IMU model (ring.algorithms.sensors.imu; VALUE "
                        "read as YAML), e.g. --imu low_pass_filter_rot_cutoff=null")
    p.add_argument("--check", action="store_true",
                   help="noise-free, unfiltered data, and check the quaternion "
                        "conventions on it (prints the gyro's error for both)")
    p.add_argument("--out", type=Path, required=True, help="dataset .npz to write")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    try:
        imu_options = {}
        for item in args.imu:
            key, sep, value = item.partition("=")
            if not sep:
                raise RingSetError(f"--imu {item!r}: write KEY=VALUE")
            imu_options[key] = yaml.safe_load(value)
        if args.check:  # ideal sensors, so that the gyro is the truth's exact rate
            imu_options.update(low_pass_filter_rot_cutoff=None,
                               low_pass_filter_pos_f_cutoff=None)
        arrays = generate(args.chain, args.imus, args.sequences, args.duration_s,
                          args.rate_hz, args.configs, args.seed, noisy=not args.check,
                          imu_options=imu_options)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.out, **arrays)
        print(f"wrote {args.out}: {args.sequences} x {args.duration_s:g} s at "
              f"{args.rate_hz:g} Hz in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        if args.check:
            print(json.dumps(check_conventions(arrays), indent=2))
    except RingSetError as exc:
        print(f"ring_simulator_set: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
