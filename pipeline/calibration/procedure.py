"""The live calibration procedure: its phases, prompts and timing, and the windows it yields.

One definition for every place that guides a user through it (``imuflow calibrate CONFIG``
on the terminal, the viewer's Calibrate button): get into the neutral pose, or another still
pose the chain names (``still_pose.py``; lead-in), hold it still, then flex and extend each
joint. :class:`ProcedureClock` walks the phases on the
host monotonic clock (ns, the ``t_host`` of the recorded samples), and
:meth:`ProcedureClock.windows` gives the still and motion phases as prompted, with margins
cut from their ends (settling in, moving off), for
:func:`pipeline.calibration.session_input.calibrate_samples`. The phases as prompted, not as
found in the data: a user's quietest moment may be the pose after the motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.calibration.joint_centre import shared_joints
from pipeline.calibration.sensor_to_segment import Calibration
from pipeline.calibration.still_pose import NEUTRAL, pose_names, pose_prompt
from pipeline.kinematics.chain import Chain

LEAD_IN_S = 3.0          # s to get into the neutral pose
STATIC_S = 4.0           # s holding it still
FUNCTIONAL_S = 25.0      # s of joint motion
STILL_MARGIN_S = 0.5     # s cut from each end of the still phase: settling in, moving off
MOTION_MARGIN_S = 0.25   # s cut from each end of the motion phase


@dataclass(frozen=True)
class Phase:
    """One step of the procedure: ``key`` (lead_in, still, motion), its length and prompt."""

    key: str
    seconds: float
    prompt: str


def procedure_phases(chain: Chain, lead_in_s: float = LEAD_IN_S, static_s: float = STATIC_S,
                     functional_s: float = FUNCTIONAL_S,
                     pose: str = NEUTRAL) -> tuple[Phase, Phase, Phase]:
    """The three phases for ``chain`` (its hinges named in the motion prompt), still in
    ``pose``; ValueError if a length is not > 0 or the chain has no such pose."""
    if not (lead_in_s > 0 and static_s > 0 and functional_s > 0):
        raise ValueError("the lead-in, still and motion phases must each last > 0 s, got "
                         f"{lead_in_s:g}, {static_s:g}, {functional_s:g}")
    joints = ", ".join(chain.body_names[i] for i in chain.hinge_bodies) or "every joint"
    # a joint with an IMU on both segments also gets its centre fitted, which needs the
    # parent segment to move too (flexions under a still thigh show only the shank's lever)
    limb = "; then move the whole limb freely (a leg: walk a few steps)" if shared_joints(
        chain) else ""
    return (Phase("lead_in", lead_in_s, f"get into the {pose} pose: {pose_prompt(chain, pose)}"),
            Phase("still", static_s, f"hold still in the {pose} pose"),
            Phase("motion", functional_s, "flex and extend each joint through its range, about "
                                          f"ten times ({joints}), at a steady pace{limb}"))


@dataclass(frozen=True)
class Progress:
    """Where the procedure is: phase ``index`` (0-based), seconds into it, whether it just began."""

    index: int
    phase: Phase
    elapsed_s: float
    began: bool

    @property
    def fraction(self) -> float:
        """0..1 of the phase done."""
        return min(1.0, self.elapsed_s / self.phase.seconds)


class ProcedureClock:
    """Walks the phases on the host clock; remembers when each began (``marks``, t_host ns)."""

    def __init__(self, phases: tuple[Phase, ...]) -> None:
        self.phases = phases
        self.marks: list[int] = []  # start of each phase begun, then the end of the last

    @property
    def done(self) -> bool:
        """All phases are over."""
        return len(self.marks) > len(self.phases)

    def update(self, now_ns: int) -> Progress | None:
        """The phase at ``now_ns`` (the first call starts the procedure); None once done.

        A phase ends after its seconds on the next call; each call moves on at most one phase,
        so every prompt is shown (``began``) before its phase is timed.
        """
        if self.done:
            return None
        if not self.marks:
            self.marks.append(now_ns)
            return Progress(0, self.phases[0], 0.0, True)
        i = len(self.marks) - 1
        elapsed = (now_ns - self.marks[-1]) * 1e-9
        if elapsed < self.phases[i].seconds:
            return Progress(i, self.phases[i], elapsed, False)
        self.marks.append(now_ns)
        if self.done:
            return None
        return Progress(i + 1, self.phases[i + 1], 0.0, True)

    def windows(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(still, motion) host-clock windows (t_host ns) as prompted, margins cut off."""
        if not self.done:
            raise ValueError("the procedure has not ended")
        m = self.marks
        still = (m[1] + _ns(STILL_MARGIN_S), m[2] - _ns(STILL_MARGIN_S))
        motion = (m[2] + _ns(MOTION_MARGIN_S), m[3] - _ns(MOTION_MARGIN_S))
        return still, motion


def how_to_use(path: Path) -> str:
    """How a graph applies the calibration file at ``path`` (one line)."""
    return (f"to use it, `imuflow run CONFIG --calibration {path}`, or add `calibration: "
            f"{path}` to the params of the graph's filter node (nodes.filter.Filter) and "
            "`joint_centres:` with the same file to its observer's (the sensors' lever arms); "
            "a calibration marked poor (ok: false) is refused there")


def found_phases_hint(session: Path, chain: Chain) -> str:
    """What to do when a calibration from phases found in ``session`` is poor (one line)."""
    others = pose_names(chain)[1:]
    pose = (f"; a window in another still pose of the chain ({', '.join(others)}) with "
            f"--pose NAME" if others else "")
    return (f"the phases were found in {session} automatically; if it holds a few seconds "
            f"standing still in the neutral pose ({pose_prompt(chain, NEUTRAL)}), name "
            f"them: `imuflow calibrate {session} --static T0:T1 -o FILE` (seconds from the "
            f"start; --functional T2:T3 for the joint motion{pose}), else record the "
            "procedure (docs/calibration.md)")


def report_lines(cal: Calibration) -> list[str]:
    """What was found, for the user: the phases, each sensor's rotation and quality, problems."""
    lines = [f"static pose {cal.static[0]:.2f}-{cal.static[1]:.2f} s ({cal.pose}), functional "
             f"motion {cal.functional[0]:.2f}-{cal.functional[1]:.2f} s"]
    for s in cal.sensors.values():
        q = ", ".join(f"{x:+.4f}" for x in s.rotation)
        lines.append(f"  {s.imu:<10} {s.method:<13} rotation [{q}]  " + ", ".join(
            f"{k} {v:.3g}" for k, v in s.quality.items()))
    for j in cal.joints.values():
        arms = "  ".join(f"{imu} [{', '.join(f'{x:+.3f}' for x in v)}] m"
                         for imu, v in zip(j.imus, j.levers, strict=True))
        lines.append(f"  joint {j.joint:<8} centre to {arms}  " + ", ".join(
            f"{k} {v:.3g}" for k, v in j.quality.items())
                     + "".join(f"\n    not used: {p}" for p in j.problems))
    for (t0, t1), score, why in sorted(cal.others):
        why = why.split("): ")[0] + ")" if "): " in why else why  # the finding, not the advice
        lines.append(f"  still window {t0:.2f}-{t1:.2f} s not taken (score {score:.2f}"
                     + (f"; {why}" if why else "") + ")")
    return (lines + [f"NOTE: {n}" for n in cal.notes()]
            + [f"POOR: {p}" for p in cal.problems()])


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)
