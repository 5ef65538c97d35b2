"""The calibration file (YAML): per IMU the sensor-to-segment rotation, per joint shared by two
IMUs their lever arms to its centre; each with its source and quality."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from pipeline.calibration.joint_centre import JointCentre, shared_joints
from pipeline.calibration.sensor_to_segment import Calibration
from pipeline.kinematics.chain import Chain
from pipeline.kinematics.quaternion import np_qto_matrix
from pipeline.runtime.atomic_file import atomic_text
from pipeline.runtime.errors import ConfigError

VERSION = 1
# the node parameters that take a calibration file, by node kind: the filter applies its
# rotations, the observers take its joint centres (`imuflow track` and `run --calibration`)
CALIBRATION_PARAMS = (("filter", "calibration"), ("constraint_observer", "joint_centres"),
                      ("nodes.observer.RnnObserver", "joint_centres"))


def _rounded(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 5)


def calibration_to_dict(cal: Calibration) -> dict:
    """Plain YAML-ready dict of a calibration."""
    return {
        "version": VERSION,
        "chain": cal.chain,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {"file": cal.source, "rate_hz": cal.rate_hz,
                   "static_s": [round(x, 3) for x in cal.static],
                   "static_pose": cal.pose,
                   "functional_s": [round(x, 3) for x in cal.functional]},
        "ok": cal.ok,
        "sensors": {
            name: {"body": s.body,
                   "rotation": [round(float(x), 7) for x in s.rotation],
                   "method": s.method,
                   "quality": {k: _rounded(v) for k, v in s.quality.items()},
                   "problems": list(s.problems),
                   "notes": list(s.notes)}
            for name, s in cal.sensors.items()},
        "joints": {name: _joint_to_dict(j) for name, j in cal.joints.items()},
    }


def _joint_to_dict(j: JointCentre) -> dict:
    def vec(v: np.ndarray) -> list[float]:
        return [round(float(x), 4) for x in v]

    return {"imus": list(j.imus),
            "levers_m": {imu: vec(v) for imu, v in zip(j.imus, j.levers, strict=True)},
            "chain_levers_m": {imu: vec(v) for imu, v in zip(j.imus, j.chain_levers,
                                                              strict=True)},
            "quality": {k: _rounded(v) for k, v in j.quality.items()},
            "problems": list(j.problems)}


HEADER = """\
# imuflow sensor-to-segment calibration (`imuflow calibrate`; docs/calibration.md)
# rotation: w, x, y, z, sensor frame -> segment frame (v_segment = R v_sensor)
# method static+hinge: gravity in the static pose + hinge axis from functional motion (full
# rotation); static: gravity only (heading about the vertical as mounted)
# joints: per joint with an IMU on both segments, levers_m from the joint centre to each IMU
# (m, segment frames; Seel et al. 2012), for the observers' `joint_centres:`
"""


def write_calibration(cal: Calibration, path: str | Path) -> Path:
    """Write ``cal`` as YAML to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    text = HEADER + yaml.safe_dump(calibration_to_dict(cal), sort_keys=False)
    with atomic_text(path) as f:
        f.write(text)
    return path


def load_rotations(path: str | Path, *, allow_poor: bool = False) -> dict[str, np.ndarray]:
    """IMU name -> 3x3 sensor-to-segment rotation from a calibration file.

    Raises ConfigError naming the file and key when it is malformed, and when the
    calibration was poor (its problems listed) unless ``allow_poor``.
    """
    path = Path(path)
    doc = _read(path)
    out = {}
    problems = []
    for name, entry in doc["sensors"].items():
        where = f"sensors.{name}.rotation"
        rot = entry.get("rotation") if isinstance(entry, dict) else None
        try:
            q = np.asarray(rot, dtype=np.float64)
        except (TypeError, ValueError):
            q = np.zeros(0)
        if q.shape != (4,) or not np.isfinite(q).all() or abs(np.linalg.norm(q) - 1) > 1e-3:
            raise ConfigError(f"{where}: expected a unit quaternion [w, x, y, z], got {rot!r}",
                              file=str(path), key=where)
        out[str(name)] = np.asarray(np_qto_matrix(q / np.linalg.norm(q)), dtype=np.float64)
        problems += [f"{name}: {p}" for p in entry.get("problems") or []]
    if problems and not allow_poor:
        raise ConfigError("the calibration is poor and is not applied: " + "; ".join(problems)
                          + "; calibrate again (or set allow_poor_calibration: true to use it "
                          "anyway)", file=str(path), key="calibration")
    return out


def load_joint_levers(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """From a calibration file's ``joints:``: joint (child body) name -> (2, 3) lever arms m
    (centre to the parent's IMU, to the child's), for the joints found well, and joint name ->
    problems for those found poorly (not returned as levers). A file without ``joints:`` (made
    before 2026-12-07) gives none. Raises ConfigError naming the file and key when malformed."""
    path = Path(path)
    joints = _read(path).get("joints") or {}
    if not isinstance(joints, dict):
        raise ConfigError("joints: expected a map of joint name -> levers", file=str(path),
                          key="joints")
    levers, poor = {}, {}
    for name, entry in joints.items():
        where = f"joints.{name}"
        imus = entry.get("imus") if isinstance(entry, dict) else None
        arms = entry.get("levers_m") if isinstance(entry, dict) else None
        if (not isinstance(imus, list) or len(imus) != 2 or not isinstance(arms, dict)
                or any(i not in arms for i in imus)):
            raise ConfigError(f"{where}: expected 'imus: [PARENT, CHILD]' and 'levers_m' with a "
                              f"vector for each, got {entry!r}", file=str(path), key=where)
        try:
            v = np.asarray([arms[i] for i in imus], dtype=np.float64)
        except (TypeError, ValueError):
            v = np.zeros(0)
        if v.shape != (2, 3) or not np.isfinite(v).all():
            raise ConfigError(f"{where}.levers_m: expected two [x, y, z] vectors in m, got "
                              f"{arms!r}", file=str(path), key=f"{where}.levers_m")
        if entry.get("problems"):
            poor[str(name)] = [str(p) for p in entry["problems"]]
        else:
            levers[str(name)] = v
    return levers, poor


def joint_levers_for(chain: Chain, path: str | Path, node_id: str,
                     log: logging.Logger | logging.LoggerAdapter) -> dict[str, np.ndarray]:
    """A node's ``joint_centres`` parameter: the lever arms of the file at ``path`` for
    ``chain``'s joints (logged; joints found poorly keep the chain's IMU positions, with a
    warning). Raises ConfigError with key ``joint_centres`` when the file cannot be read or
    names a joint the chain lacks (a calibration made with another chain)."""
    try:
        levers, poor = load_joint_levers(path)
    except ConfigError as exc:
        raise ConfigError(f"node '{node_id}' joint_centres: {exc}", key="joint_centres") from None
    for name, problems in poor.items():
        log.warning("joint '%s' in %s was found poorly (%s): the chain's IMU positions stay "
                    "in use there", name, path, "; ".join(problems))
    known = {chain.body_names[b] for b, _, _ in shared_joints(chain)}
    unknown = sorted(set(levers) - known)
    if unknown:
        raise ConfigError(f"node '{node_id}': {path} has joint centres for {unknown}, which "
                          f"chain '{chain.name}' has no joint with an IMU on both sides for (it "
                          f"has {sorted(known)}); calibrate with this graph's chain",
                          key="joint_centres")
    if not levers:
        log.info("%s has no joint centres (a calibration made before they were fitted): the "
                 "chain's IMU positions are used", path)
    for name, v in levers.items():
        log.info("joint '%s': lever arms from %s (centre to the IMUs: %s m)", name, path,
                 np.round(v, 3).tolist())
    return levers


def _read(path: Path) -> dict:
    """The calibration file's document; ConfigError naming the file when it is not one."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read calibration file: {exc.strerror}; make one with "
                          "`imuflow calibrate`", file=str(path), key="calibration") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a YAML calibration file ({exc})", file=str(path),
                          key="calibration") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(
            doc.get("sensors"), dict):
        raise ConfigError(f"not an imuflow calibration file (need 'version: {VERSION}' and a "
                          "'sensors' map); make one with `imuflow calibrate`", file=str(path),
                          key="calibration")
    return doc
