"""Kinematic chains: chain YAML model, quaternions, forward kinematics, meshes, motion and IMU synthesis.

May import: the standard library, numpy, numba, scipy, PyYAML. Imports nothing of the runtime
(so training, evaluation and the simulator use it without the bus).
"""

from pipeline.kinematics.chain import Chain as Chain
from pipeline.kinematics.chain import ChainError as ChainError
from pipeline.kinematics.chain import JointType as JointType
from pipeline.kinematics.chain import load_chain as load_chain
from pipeline.kinematics.fk import Kinematics as Kinematics
