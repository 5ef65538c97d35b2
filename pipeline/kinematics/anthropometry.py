"""Anthropometric segment inertia table: de Leva (1996), scaled by body mass and height.

Source: P. de Leva, "Adjustments to Zatsiorsky-Seluyanov's segment inertia parameters",
Journal of Biomechanics 29(9):1223-1230, 1996, Table 4 (the joint-centre based segment
definitions; the head runs from the vertex to the mid-gonion point, the trunk from the
suprasternale to the mid hip joint centre, the foot from the heel to the tip of the longest
toe, the hand from the wrist joint centre to the third metacarpale).

Per segment and sex: length (m, of the reference subjects: 1.741 m tall males of 73.0 kg,
1.735 m tall females of 61.9 kg), mass as a fraction of body mass, centre of mass as a
fraction of the length from the proximal (origin) endpoint, and radii of gyration as
fractions of the length about the sagittal (antero-posterior), transverse (medio-lateral)
and longitudinal axes through the centre of mass. Which anatomical axis each of de Leva's
two transverse columns belongs to is not spelled out in the paper; imuflow reads "sagittal"
as the antero-posterior axis and "transverse" as the medio-lateral axis (the two differ by
a few per cent for the limbs). Lengths scale with height / reference height, masses with
body mass; a chain body may give its own length (``length_m``) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Sex = Literal["male", "female"]

REFERENCE_HEIGHT_M = {"male": 1.741, "female": 1.735}
REFERENCE_MASS_KG = {"male": 73.0, "female": 61.9}


@dataclass(frozen=True)
class SegmentRow:
    """A table row: length m, mass fraction, CoM fraction, radii fractions (sag, trans, long)."""

    length_m: float
    mass_frac: float
    com_frac: float
    r_sag: float
    r_trans: float
    r_long: float


# de Leva 1996, Table 4 (male, female); values as printed, per cent turned into fractions
DE_LEVA_1996: dict[str, dict[str, SegmentRow]] = {
    "head": {"male": SegmentRow(0.2033, 0.0694, 0.5976, 0.362, 0.376, 0.312),
             "female": SegmentRow(0.2002, 0.0668, 0.5894, 0.330, 0.359, 0.318)},
    "trunk": {"male": SegmentRow(0.5319, 0.4346, 0.4486, 0.372, 0.347, 0.191),
              "female": SegmentRow(0.5293, 0.4257, 0.4151, 0.357, 0.339, 0.171)},
    "upper_trunk": {"male": SegmentRow(0.1707, 0.1596, 0.2999, 0.716, 0.454, 0.659),
                    "female": SegmentRow(0.1425, 0.1545, 0.2077, 0.746, 0.502, 0.718)},
    "mid_trunk": {"male": SegmentRow(0.2155, 0.1633, 0.4502, 0.482, 0.383, 0.468),
                  "female": SegmentRow(0.2053, 0.1465, 0.4512, 0.433, 0.354, 0.415)},
    "lower_trunk": {"male": SegmentRow(0.1457, 0.1117, 0.6115, 0.615, 0.551, 0.587),
                    "female": SegmentRow(0.1815, 0.1247, 0.4920, 0.433, 0.402, 0.444)},
    "upper_arm": {"male": SegmentRow(0.2817, 0.0271, 0.5772, 0.285, 0.269, 0.158),
                  "female": SegmentRow(0.2751, 0.0255, 0.5754, 0.278, 0.260, 0.148)},
    "forearm": {"male": SegmentRow(0.2689, 0.0162, 0.4574, 0.276, 0.265, 0.121),
                "female": SegmentRow(0.2643, 0.0138, 0.4559, 0.261, 0.257, 0.094)},
    "hand": {"male": SegmentRow(0.0862, 0.0061, 0.7900, 0.628, 0.513, 0.401),
             "female": SegmentRow(0.0780, 0.0056, 0.7474, 0.531, 0.454, 0.335)},
    "thigh": {"male": SegmentRow(0.4222, 0.1416, 0.4095, 0.329, 0.329, 0.149),
              "female": SegmentRow(0.3685, 0.1478, 0.3612, 0.369, 0.364, 0.162)},
    "shank": {"male": SegmentRow(0.4340, 0.0433, 0.4459, 0.255, 0.249, 0.103),
              "female": SegmentRow(0.4323, 0.0481, 0.4416, 0.271, 0.267, 0.093)},
    "foot": {"male": SegmentRow(0.2581, 0.0137, 0.4415, 0.257, 0.245, 0.124),
             "female": SegmentRow(0.2283, 0.0129, 0.4014, 0.299, 0.279, 0.139)},
}

SEGMENTS = tuple(DE_LEVA_1996)


def segment_inertia(segment: str, sex: Sex, body_mass_kg: float, height_m: float,
                    axis: np.ndarray, start: np.ndarray, length_m: float | None = None
                    ) -> tuple[float, np.ndarray, np.ndarray]:
    """Mass kg, CoM (3,) m and inertia tensor (3, 3) kg m^2 about the CoM, in the body frame.

    Args:
        segment: a key of :data:`DE_LEVA_1996`.
        sex: "male" or "female".
        body_mass_kg, height_m: the subject.
        axis: (3,) direction from the segment's proximal to its distal endpoint, body frame.
        start: (3,) m, the proximal endpoint in the body frame.
        length_m: segment length; default the table's, scaled by height.

    The principal axes are the longitudinal ``axis``, the medio-lateral axis (body y made
    orthogonal to ``axis``; body z when ``axis`` is along y) and the antero-posterior axis
    completing them.
    """
    row = DE_LEVA_1996[segment][sex]
    length = row.length_m * height_m / REFERENCE_HEIGHT_M[sex] if length_m is None else length_m
    mass = row.mass_frac * body_mass_kg
    e_long = np.asarray(axis, dtype=np.float64)
    e_long = e_long / np.linalg.norm(e_long)
    ref = np.array([0.0, 1.0, 0.0]) if abs(e_long[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
    e_ml = ref - (ref @ e_long) * e_long
    e_ml /= np.linalg.norm(e_ml)
    e_ap = np.cross(e_ml, e_long)
    com = np.asarray(start, dtype=np.float64) + row.com_frac * length * e_long
    k = mass * length * length
    basis = np.stack([e_ap, e_ml, e_long], axis=1)  # columns: principal axes in body frame
    moments = k * np.array([row.r_sag ** 2, row.r_trans ** 2, row.r_long ** 2])
    return mass, com, basis @ np.diag(moments) @ basis.T
