"""Inverse dynamics of kinematic chains: recursive Newton-Euler (numba) over segment inertia.

May import: the standard library, numpy, numba and ``pipeline.kinematics``; imports nothing
of the runtime (training and the dynamics node use it alike).
"""

from pipeline.dynamics.rigid_body import GRAVITY as GRAVITY
from pipeline.dynamics.rigid_body import InverseDynamics as InverseDynamics
from pipeline.dynamics.rigid_body import dof_names as dof_names
