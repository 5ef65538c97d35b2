"""A held-out set made by another public simulator: RING's random chain motion generator.

Every imuflow model is trained on the project's own generator (``pipeline.kinematics.motion``
and ``sim_imu``). Issue 14 judges models on sets from other simulators; this script makes one
with the RCMG of the public RING package (Bachhuber et al., PyPI ``imt-ring``; JAX), which
simulates its own motion (random joint trajectories over the whole range, the free root at
any orientation and up to +-2.5 m away), its own IMU model (finite differences of the link
poses, low-pass filtered, RING's noise and bias levels: acc noise 0.048 m/s^2 and bias up to
0.5 m/s^2, gyro noise 0.7 deg/s and bias up to 3 deg/s per axis) and none of imuflow's code.

RING is not an imuflow dependency: this script runs in a separate virtual environment
(as ``tools/compare_ring.py``, with imuflow installed beside RING) and writes the dataset
``.npz`` that ``imuflow eval`` reads (``pipeline/evaluation/imu_dataset.py``)::

    python3.11 -m venv /tmp/ringenv
    /tmp/ringenv/bin/pip install imt-ring==1.7.1 jax==0.10.2 jaxlib==0.10.2 dm-haiku==0.0.17
    /tmp/ringenv/bin/pip install -e .      # imuflow's own code and dependencies
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
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.evaluation.imu_dataset import ImuDataset  # noqa: E402
from pipeline.kinematics.chain import Chain, JointType, load_chain  # noqa: E402
from pipeline.kinematics.quaternion import np_qconj, np_qmul, np_qto_rotvec  # noqa: E402

DEFAULT_CONFIGS = ("standard", "expFast", "expSlow", "hinUndHer")
AXES = {(1, 0, 0): "rx", (0, 1, 0): "ry", (0, 0, 1): "rz"}
FREE_RANGE_RAD = math.radians(170)  # hinge limits wider than this move freely


class RingSetError(Exception):
    """A user-facing failure: the message names the file, the field and the fix."""


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in v)


def chain_xml(chain: Chain, imus: list[str], dt: float) -> tuple[str, dict]:
    """RING's XML for ``chain``'s bodies (positions m, axes in the parent's joint frame) and
    its IMU sites ``imus``; also, by body name, each hinge's RING joint type and its limits
    in RING's angle (rad; a hinge about -y is RING's ``ry`` with the angle negated)."""
    where = chain.source or chain.name
    sites = {s.name: s for s in chain.imus}
    if chain.joint_types[0] != JointType.FREE or (chain.parents[1:] < 0).any():
        raise RingSetError(f"{where}: bodies: RING's set needs one free root body")
    for name in imus:
        if name not in sites:
            raise RingSetError(f"{where}: imus: no IMU site {name!r} "
                               f"(sites: {', '.join(sites)})")
        if not np.allclose(sites[name].rotation, [1, 0, 0, 0]):
            raise RingSetError(f"{where}: imus.{name}.rotation: RING's set puts the sensor "
                               "frame on the segment frame; use a chain with rotation "
                               "[1, 0, 0, 0]")
    hinges: dict[str, dict] = {}

    def body_xml(i: int, indent: str) -> str:
        body = chain.bodies[i]
        field = f"{where}: bodies.{body.name}.joint"
        if not np.allclose(body.joint.rotation, [1, 0, 0, 0]):
            raise RingSetError(f"{field}.rotation: RING's set takes joints without a rotation")
        attrs = f'name="{body.name}"'
        if body.joint.type == JointType.FREE:
            attrs += ' joint="free" damping="5 5 5 25 25 25"'
        elif body.joint.type == JointType.HINGE:
            axis = np.asarray(body.joint.axis, float)
            key = tuple(int(round(abs(a))) for a in axis)
            if key not in AXES or not np.isclose(np.abs(axis).sum(), 1.0):
                raise RingSetError(f"{field}.axis: RING's set takes hinges about a body axis "
                                   "(+-x, +-y, +-z)")
            lo, hi = body.joint.limits or (-math.pi, math.pi)
            # RING's hinge angle turns the child about the body axis as imuflow's does
            # (q_rel = conj of its joint rotation, ``maths.quat_rot_axis`` negating the
            # angle), so only a negative axis flips the limits
            hinges[body.name] = {"ring_type": AXES[key],
                                 "ring_limits": (lo, hi) if axis.sum() > 0 else (-hi, -lo)}
            attrs += f' joint="{AXES[key]}" damping="3" pos="{_fmt(body.joint.offset)}"'
        else:
            raise RingSetError(f"{field}.type: RING's set takes free and hinge joints, not "
                               f"{body.joint.type.name.lower()!r}")
        inner = [f'{indent}  <geom type="box" mass="1" pos="0 0 0" dim="0.1 0.05 0.05"/>']
        for name in imus:
            if sites[name].body == body.name:
                inner += [f'{indent}  <body name="imu_{name}" joint="frozen" '
                          f'pos="{_fmt(sites[name].position)}">',
                          f'{indent}    <geom type="box" mass="0.1" dim="0.02 0.02 0.01"/>',
                          f"{indent}  </body>"]
        inner += [body_xml(c, indent + "  ") for c in np.flatnonzero(chain.parents == i)]
        return f"{indent}<body {attrs}>\n" + "\n".join(inner) + f"\n{indent}</body>"

    xml = (f'<x_xy model="{chain.name}">\n'
           f'  <options gravity="0 0 9.81" dt="{dt}"/>\n  <worldbody>\n'
           f"{body_xml(0, '    ')}\n  </worldbody>\n</x_xy>\n")
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


def q_rel_from_rot(rot: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """imuflow's q_rel (T, n, 4) body to parent (root: to earth) from RING's link rotations
    (T, n, 4), earth vectors into link frames."""
    q_b2e = np_qconj(rot)
    out = np.empty_like(q_b2e)
    for i, p in enumerate(parents):
        out[:, i] = q_b2e[:, i] if p < 0 else np_qmul(rot[:, p], q_b2e[:, i])
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
             imu_options: dict | None = None) -> ImuDataset:
    """``n`` sequences from RING's RCMG as an imuflow dataset (module docstring)."""
    _patch_jnp_clip()
    import ring
    from ring.algorithms.generator import finalize_fns

    if n % len(config_names):
        raise RingSetError(f"--sequences {n} must be a multiple of the {len(config_names)} "
                           "motion configurations (--configs)")
    chain = load_chain(chain_path)
    xml, hinges = chain_xml(chain, imus, 1.0 / rate_hz)
    sys_ = ring.System.create(xml)
    idx = [sys_.name_to_idx(b) for b in chain.body_names]
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
    q_rel = np.stack([q_rel_from_rot(np.asarray(y["rot"], float), chain.parents)[:T]
                      for _, y in data])
    settings = {"simulator": "ring.RCMG", "imt_ring": metadata.version("imt-ring"),
                "configs": config_names,
                # one RCMG call makes one sequence per configuration, in their order
                "config_of_sequence": [config_names[i % len(config_names)] for i in range(n)],
                "seed": seed, "noisy": noisy, "imu_kwargs": dict(imu_kwargs), "hinges": hinges,
                "xml": xml}
    path = chain_path.resolve()
    return ImuDataset(imu=imu.astype(np.float32), q_rel=q_rel.astype(np.float32),
                      rate_hz=rate_hz, chain=str(path.relative_to(REPO)
                                                 if path.is_relative_to(REPO) else path),
                      imus=tuple(imus), bodies=chain.body_names,
                      seeds=np.full(n, seed, dtype=np.int64), settings=settings)


def check_conventions(data: ImuDataset) -> dict:
    """On noise-free, unfiltered data: the root IMU's gyroscope (RING: the rotation from one
    sample to the next, rad/s) against the truth's rate over the same step, rms rad/s, for
    the truth as converted and for its conjugate (the other convention); the first is
    near 0."""
    name = data.imus[0]  # the root IMU: its q_rel is body to earth
    if data.bodies.index(name) != 0:
        raise RingSetError(f"--check needs the root's IMU first in --imus (got {name})")
    gyr = data.imu[:, :-1, 3:6].astype(float)
    out = {"imu": name, "gyro_rms_rad_s": float(np.sqrt(np.mean(np.sum(gyr ** 2, -1))))}
    root = data.q_rel[:, :, 0].astype(float)
    for label, q in (("as_converted", root), ("conjugated", np_qconj(root))):
        rate = np_qto_rotvec(np_qmul(np_qconj(q[:, :-1]), q[:, 1:])) * data.rate_hz
        out[f"gyro_rms_error_{label}_rad_s"] = float(
            np.sqrt(np.mean(np.sum((gyr - rate) ** 2, -1))))
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
        data = generate(args.chain, args.imus, args.sequences, args.duration_s,
                        args.rate_hz, args.configs, args.seed, noisy=not args.check,
                        imu_options=imu_options)
        data.save(args.out, compressed=True)
        print(f"wrote {args.out}: {args.sequences} x {args.duration_s:g} s at "
              f"{args.rate_hz:g} Hz in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        if args.check:
            print(json.dumps(check_conventions(data), indent=2))
    except RingSetError as exc:
        print(f"ring_simulator_set: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
