"""Untrained observers of the shipped architecture for benchmarks: random weights, ONNX + card.

Latency does not depend on the weights, so the end-to-end benchmark and the soak
run a model of the shipped size (``tools.training.network.Observer``, GRU 2 x 128)
exported with ``tools.training.export.export_onnx`` for any chain, with a model
card that says the weights are random. Outputs: the root's quaternion
(inclination) and sin/cos of every hinge.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.estimation.output_encoding import output_width
from pipeline.evaluation.model_card import write_card
from pipeline.kinematics.chain import JointType, load_chain
from tools.training.problem import Problem

HIDDEN = 128  # shipped architecture (tools/training/trainer.py TrainConfig)
LAYERS = 2


def export_random_observer(chain_file: Path, out_dir: Path, name: str | None = None,
                           seed: int = 0, hidden: int = HIDDEN, layers: int = LAYERS) -> Path:
    """Write ``out_dir/<name>.onnx`` (random GRU observer, default 2x128, for ``chain_file``) + card.

    Returns the .onnx path. The input normalisation is random too (mean and std around
    the scale of raw SI IMU data), so every part of the network is exercised.
    """
    import torch

    from tools.training.export import build_card, export_onnx
    from tools.training.network import Observer

    chain_file = Path(chain_file).resolve()
    chain = load_chain(chain_file)
    name = name or f"random-{chain.name}-h{hidden}x{layers}"
    outputs = [(chain.body_names[0], "quat")] + [
        (b.name, "sincos") for b in chain.bodies[1:] if b.joint.type == JointType.HINGE]
    problem = Problem(name=f"bench-{chain.name}", chain=str(chain_file),
                      imus=tuple(chain.imu_names), outputs=tuple(outputs))
    n_out = output_width(outputs)
    torch.manual_seed(seed)
    n_in = 6 * len(chain.imu_names)
    model = Observer(n_in, n_out, hidden, layers, in_mean=torch.randn(n_in),
                     in_std=0.5 + 4 * torch.rand(n_in)).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    export_onnx(model, onnx_path)
    training = {"recipe": "untrained: random weights (benchmarks only; latency does not depend "
                          "on the weights)", "seed": seed,
                "network": f"tools.training.network.Observer GRU {layers}x{hidden}"}
    card = build_card(model, problem, name, onnx_path, training, {})
    write_card(card, card.path)
    return onnx_path
