"""Model files of a graph: find them, keep them inside the graph's model folders, session options.

Shared by the nodes that load ONNX models (the observer, the dynamics node). A model is only
loaded from inside one of the graph's ``model_dirs`` after resolving symlinks and ``..``.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from pipeline.runtime.errors import ModelRejected


def session_options() -> ort.SessionOptions:
    """onnxruntime options for latency at batch 1: 1 intra-op thread, sequential execution."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def find_model(path: str | Path, model_dirs: tuple[Path, ...]) -> Path:
    """The model file ``path`` (.onnx or card), as given or looked up in ``model_dirs``."""
    p = Path(path).expanduser()
    if p.exists():
        return p
    if not p.is_absolute():
        for d in model_dirs:
            for cand in (Path(d) / p, Path(d) / p.name):
                if cand.exists():
                    return cand
    raise ModelRejected(f"model '{path}' not found (looked as given and in the model folders "
                        f"{[str(d) for d in model_dirs]}); give a path to an .onnx file or its "
                        "card .json")


def check_inside(path: Path, model_dirs: tuple[Path, ...], what: str = "model") -> Path:
    """Resolved ``path`` if it lies inside one of ``model_dirs``; ModelRejected otherwise."""
    real = path.resolve()
    for d in model_dirs:
        if real.is_relative_to(Path(d).resolve()):
            return real
    raise ModelRejected(f"{what} '{path}' (resolves to {real}) is outside the model folders "
                        f"{[str(Path(d).resolve()) for d in model_dirs]}; copy it into one of "
                        "them or add its folder to the graph's 'model_dirs'")
