"""Dynamics node: joint torques (chain.torque) from the chain state, Newton-Euler + learned."""

from nodes.dynamics.node import Dynamics as Dynamics
