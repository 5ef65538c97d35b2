"""imuflow core: messages, bus, node base class, graph config, runner and clocks.

The core imports no driver or node: kinds are loaded by dotted path
(see :mod:`pipeline.runtime.registry`).
"""

from pipeline.runtime.errors import ConfigError as ConfigError
from pipeline.runtime.errors import DeviceLost as DeviceLost
from pipeline.runtime.errors import DeviceTimeout as DeviceTimeout
from pipeline.runtime.errors import ImuflowError as ImuflowError
from pipeline.runtime.errors import MessageError as MessageError
from pipeline.runtime.errors import ModelRejected as ModelRejected
from pipeline.runtime.message import Block as Block
from pipeline.runtime.message import StreamInfo as StreamInfo
from pipeline.runtime.node import Node as Node
from pipeline.runtime.node import Source as Source
from pipeline.runtime.ports import Input as Input
