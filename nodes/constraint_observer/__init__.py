"""ConstraintObserver: joint state from joint constraints, no training (observer.py)."""

from nodes.constraint_observer.hinge import hinge_kernel
from nodes.constraint_observer.observer import ConstraintObserver

__all__ = ["ConstraintObserver", "hinge_kernel"]
