"""ConstraintObserver: joint state from joint constraints, no training (observer.py)."""

from nodes.constraint_observer.observer import ConstraintObserver

__all__ = ["ConstraintObserver"]
