"""A dataset as real users' sensors would give it: strapped on at random, then calibrated.

Each sequence's IMUs get a uniformly random sensor-to-segment rotation (all of SO(3); seed
``seed + sequence``). The calibration procedure (``calibration_motion``: neutral pose, then
each hinge flexed, DESIGN.md's sensor errors) is simulated with that mounting on the
dataset's chain carrying only the dataset's IMUs, and ``pipeline.calibration.calibrate``
finds the rotations with the phases detected automatically. The sequence's IMU data (sensor
frames the simulator aligned with the segments, up to the set's own residual errors) is then
seen through both: read in the mounted sensor frame, ``R_mount^T v``, and turned back by the
calibration as the filter node does, ``R_cal R_mount^T v``. What remains is the calibration's
error, on top of whatever the set already had.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.calibration import calibrate
from pipeline.evaluation.imu_dataset import ImuDataset
from pipeline.evaluation.joint_errors import rotation_error_deg
from pipeline.kinematics.calibration_motion import randomly_mounted, simulated_procedure
from pipeline.kinematics.chain import Chain, load_chain
from pipeline.kinematics.quaternion import np_qto_matrix

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RemountReport:
    """Per sequence and IMU, the calibration's rotation error (deg), and the problems of the
    calibrations reported poor (the filter would refuse them; they are applied here anyway,
    so that they count in the scores)."""

    rotation_error_deg: np.ndarray   # (S, n_imu)
    poor: dict[int, list[str]]       # sequence -> problems

    def summary(self) -> str:
        """One line: the rotation errors' median / p90 / max and the poor calibrations."""
        e = self.rotation_error_deg
        return (f"remounted at random and calibrated: rotation error median "
                f"{np.median(e):.1f}, p90 {np.percentile(e, 90):.1f}, max {e.max():.1f} deg "
                f"over {e.size} sensors; {len(self.poor)} of {e.shape[0]} calibrations poor")


def _calibration_chain(data: ImuDataset) -> Chain:
    """The dataset's chain with only the dataset's IMUs (what a user would strap on)."""
    path = Path(data.chain)
    chain = load_chain(path if path.is_absolute() else REPO / path)
    sites = {s.name: s for s in chain.imus}
    missing = [m for m in data.imus if m not in sites]
    if missing:
        raise ValueError(f"dataset IMUs {missing} are not in its chain {data.chain}")
    return replace(chain, imus=tuple(sites[m] for m in data.imus))


def remount_and_calibrate(data: ImuDataset, seed: int) -> tuple[ImuDataset, RemountReport]:
    """``data`` remounted at random and seen through its calibration (module docstring).

    ValueError when a dataset IMU cannot be fully calibrated (no hinge to another IMU-carrying
    segment: its heading about the vertical would stay as mounted, which no observer can
    undo).
    """
    chain = _calibration_chain(data)
    imu = np.array(data.imu, dtype=np.float32)
    errors = np.zeros((data.n_sequences, len(data.imus)))
    poor: dict[int, list[str]] = {}
    for s in range(data.n_sequences):
        mounted = randomly_mounted(chain, seed + s)
        acc, gyr = simulated_procedure(mounted, seed + s, data.rate_hz)
        cal = calibrate(mounted, acc, gyr, data.rate_hz)
        static_only = [m for m in data.imus if cal.sensors[m].method != "static+hinge"]
        if static_only:
            raise ValueError(
                f"IMU(s) {static_only} of {data.chain} get only the static part of a "
                "calibration (no hinge joins them to another IMU-carrying segment), so their "
                "heading about the vertical stays as mounted: remounting at random cannot be "
                "undone for this dataset; score it without --remount")
        if not cal.ok:
            poor[s] = cal.problems()
        for k, site in enumerate(mounted.imus):
            r_mount = np.asarray(np_qto_matrix(np.asarray(site.rotation)))
            r_cal = cal.sensors[site.name].matrix
            turn = (r_cal @ r_mount.T).astype(np.float32)
            for part in (slice(6 * k, 6 * k + 3), slice(6 * k + 3, 6 * k + 6)):
                imu[s, :, part] = imu[s, :, part] @ turn.T
            errors[s, k] = rotation_error_deg(cal.sensors[site.name].rotation, site.rotation)
    return replace(data, imu=imu), RemountReport(errors, poor)
