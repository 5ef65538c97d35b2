"""Model evaluation: model cards, IMU datasets, joint and orientation error statistics.

May import: :mod:`pipeline.runtime` (stream contracts), :mod:`pipeline.kinematics`,
:mod:`pipeline.calibration` (remounted datasets),
:mod:`pipeline.recording` and third-party packages; no node and no driver.
"""

from pipeline.evaluation.joint_errors import ErrorStats as ErrorStats
from pipeline.evaluation.joint_errors import error_stats as error_stats
from pipeline.evaluation.model_card import ModelCard as ModelCard
from pipeline.evaluation.model_card import load_card as load_card
