"""The streaming runtime: messages, bus, node base class, graph config, supervisor and workers.

May import: the standard library and third-party packages only. Imports no other part of
``pipeline`` (kinematics, recording, evaluation, cli), no node and no driver: node kinds are
loaded by dotted path or entry point (:mod:`pipeline.runtime.registry`).
"""

from pipeline.runtime.errors import ConfigError as ConfigError
from pipeline.runtime.errors import DeviceLost as DeviceLost
from pipeline.runtime.errors import DeviceTimeout as DeviceTimeout
from pipeline.runtime.errors import ImuflowError as ImuflowError
from pipeline.runtime.errors import MessageError as MessageError
from pipeline.runtime.errors import ModelRejected as ModelRejected
from pipeline.runtime.graph import GraphSpec as GraphSpec
from pipeline.runtime.graph import load_graph as load_graph
from pipeline.runtime.message import Block as Block
from pipeline.runtime.message import Flag as Flag
from pipeline.runtime.message import Header as Header
from pipeline.runtime.message import StreamInfo as StreamInfo
from pipeline.runtime.node import Node as Node
from pipeline.runtime.node import Source as Source
from pipeline.runtime.ports import Input as Input
from pipeline.runtime.ports import QueuePolicy as QueuePolicy
