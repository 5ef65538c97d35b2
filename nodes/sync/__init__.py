"""The sync node: sensor clocks mapped onto host time, sensors aligned and resampled to frames.

Holds the node (:class:`Sync`), the per-sensor track and the clock mapper. May import
:mod:`pipeline.runtime` and :mod:`pipeline.kinematics`; no other node and no driver.
"""

from nodes.sync.clock_mapper import ClockMapper as ClockMapper
from nodes.sync.sensor_track import Limits as Limits
from nodes.sync.sensor_track import SensorTrack as SensorTrack
from nodes.sync.sync import Sync as Sync
