"""Sensor-to-segment calibration: phases of a calibration recording, rotations, the file.

May import :mod:`pipeline.kinematics`, :mod:`pipeline.estimation` (joint-centre accelerations),
:mod:`pipeline.recording`, :mod:`pipeline.runtime` (errors) and third-party packages (qmt
for the joint-axis estimator); no node, no driver.
"""

from pipeline.calibration.calibration_file import load_rotations as load_rotations
from pipeline.calibration.calibration_file import write_calibration as write_calibration
from pipeline.calibration.phases import Window as Window
from pipeline.calibration.phases import parse_window as parse_window
from pipeline.calibration.sensor_to_segment import Calibration as Calibration
from pipeline.calibration.sensor_to_segment import CalibrationError as CalibrationError
from pipeline.calibration.sensor_to_segment import calibrate as calibrate
