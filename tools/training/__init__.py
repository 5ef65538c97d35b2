"""Training of the RNN observer models shipped in ``models/`` (offline tooling, not product code).

Modules: ``problem`` (chain problems and their simulator settings), ``data`` (dataset
generation and training targets), ``network`` (the GRU observer), ``losses`` (angle errors and
softmax error scaling), ``export`` (ONNX export and model card), ``trainer`` (the loop).
"""
