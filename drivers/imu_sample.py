"""`ImuSample`: the one decoded-sample record every protocol parser emits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

Vec3 = tuple[float, float, float]


class ImuSample(NamedTuple):
    """One IMU sample decoded from a device protocol (immutable).

    Attributes:
        t_sensor_ns: device clock, unwrapped to a monotonically increasing int ns;
            -1 when the protocol carries no device clock.
        counter: device packet counter, unwrapped (monotonically increasing int);
            -1 when the protocol has none.
        acc: (ax, ay, az) float, m/s^2, sensor frame, gravity included.
        gyr: (gx, gy, gz) float, rad/s, sensor frame.
        mag: (mx, my, mz) float, sensor frame, uT or vendor a.u. (see the parser's
            docstring), or None when the sample carries no magnetic field.
        extra: optional read-only mapping of protocol-specific extras, e.g.
            ``quat`` (w, x, y, z, unit norm), ``euler_deg`` (display only),
            ``temperature_c`` (deg C), ``sensor_id`` (str); None when empty.
    """

    t_sensor_ns: int
    counter: int
    acc: Vec3
    gyr: Vec3
    mag: Vec3 | None = None
    extra: Mapping[str, Any] | None = None
