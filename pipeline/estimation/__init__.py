"""Estimators without training that nodes and training share: joint constraints (constraint.py)."""
