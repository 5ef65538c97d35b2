"""The filter node: gyro bias at rest, sensor axis remapping and low-pass on IMU frames.

Holds the node (:class:`Filter`) and its stages. May import :mod:`pipeline.runtime` and
:mod:`pipeline.kinematics`; no other node and no driver.
"""

from nodes.filter.filter import Filter as Filter
from nodes.filter.filter import rotation_from_spec as rotation_from_spec
from nodes.filter.gyro_bias import RestBiasEstimator as RestBiasEstimator
from nodes.filter.lowpass import StreamingLowpass as StreamingLowpass
