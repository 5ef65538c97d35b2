"""The RNN observer node: an ONNX recurrent model stepped frame by frame with persistent state.

Holds the node (:class:`RnnObserver`), the model/chain fit checks (``fit``), the model
session (``session``), the hidden-state runner (``runner``) and the compiled one-frame GRU
step (``gru_step``). May import :mod:`pipeline.runtime`, :mod:`pipeline.kinematics` and
:mod:`pipeline.evaluation` (model cards); no other node and no driver.
"""

from nodes.observer.rnn_observer import RnnObserver as RnnObserver
