"""Hardware drivers: byte-level protocol parsers for serial and BLE IMUs, discovery helpers."""

from drivers.clock_unwrap import ClockUnwrap as ClockUnwrap
from drivers.imu_sample import ImuSample as ImuSample
from drivers.parse_stats import ParseStats as ParseStats
