"""imuflow core: messages, bus, node base class, graph config, runner and clocks.

The core imports no driver or node: kinds are loaded by dotted path
(see :mod:`pipeline.registry`).
"""

from pipeline.errors import ConfigError as ConfigError
from pipeline.errors import DeviceLost as DeviceLost
from pipeline.errors import DeviceTimeout as DeviceTimeout
from pipeline.errors import ImuflowError as ImuflowError
from pipeline.errors import MessageError as MessageError
from pipeline.errors import ModelRejected as ModelRejected
from pipeline.message import Block as Block
from pipeline.message import StreamInfo as StreamInfo
from pipeline.node import Node as Node
from pipeline.node import Source as Source
from pipeline.ports import Input as Input
