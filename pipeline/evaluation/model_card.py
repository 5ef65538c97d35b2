"""Model cards: the JSON file beside each ONNX observer model that says what it solves.

``models/<name>.json`` beside ``models/<name>.onnx``. Fields::

    schema        "imuflow.model_card/1"
    name          model name (file stem)
    onnx_file     ONNX file name, relative to the card
    sha256        hex sha256 of the ONNX file
    chain         chain file the model was trained for (path relative to the repo)
    bodies        body names of the chain, in chain order
    imus          IMU site names, in input order (each site sits on a body of the chain)
    rate_hz       sample rate of the input, Hz
    input         {"name": "imu", "layout": "per imu: acc_x acc_y acc_z gyr_x gyr_y gyr_z",
                   "units": ["m/s^2", "rad/s"], "frame": "sensor", "features": n_imu*6}
                  raw SI values go in; normalisation is inside the ONNX graph.
                  With "prior": "constraint" or "constraint-joint-centre" (a hybrid model;
                  constraint_prior.PRIOR_KINDS), the IMU values are followed by
                  the model's outputs as estimated without training
                  (pipeline/estimation/constraint_prior.py), and features is n_imu*6 + the
                  output width
    state         [{"input": "h0", "output": "hn", "shape": [layers, hidden]}, ...]
                  hidden-state tensors; the ONNX shape is [layers, batch, hidden]
    outputs       {"name": "y", "bodies": [{"body": "seg2", "encoding": "quat"|"sincos"|"up"},
                  ...]} per time step, the concatenation of each listed body's encoding:
                  "quat": 4 values w,x,y,z of q_rel (body to parent; root: to earth,
                  heading-free inclination), normalised by the consumer;
                  "sincos": 2 values sin, cos of the body's hinge angle;
                  "up" (the root only): 3 values x, y, z of earth +z in the root's frame,
                  normalised by the consumer (the inclination without the heading-free
                  quaternion's singularity near upside down)
    training      free-form recipe: generator settings, noise, loss, beta, seeds, epochs
    heldout       {"seeds": [...], "sequences": n, "duration_s": s, "warmup_s": s,
                   "per_joint": {body: {"mean_deg", "rmse_deg", "p50_deg", "p90_deg",
                   "p95_deg", "p99_deg", "max_deg"}}, "command": "how to reproduce"}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.estimation.constraint_prior import PRIOR_KINDS
from pipeline.estimation.output_encoding import ENCODING_SIZE
from pipeline.runtime.errors import ModelRejected

SCHEMA = "imuflow.model_card/1"


@dataclass(frozen=True)
class OutputBody:
    """One body's part of the model output."""

    body: str
    encoding: str  # "quat", "sincos" or "up"


@dataclass(frozen=True)
class StateTensor:
    """A hidden-state tensor pair: ONNX input and output names, shape without batch."""

    input: str
    output: str
    shape: tuple[int, int]  # (layers, hidden); ONNX tensor is (layers, batch, hidden)


@dataclass(frozen=True)
class ModelCard:
    """A parsed, checked model card."""

    name: str
    onnx_file: str
    sha256: str
    chain: str
    bodies: tuple[str, ...]
    imus: tuple[str, ...]
    rate_hz: float
    input_name: str
    state: tuple[StateTensor, ...]
    output_name: str
    outputs: tuple[OutputBody, ...]
    training: dict = field(default_factory=dict)
    heldout: dict = field(default_factory=dict)
    path: Path | None = None
    prior: str = ""  # "" or a PRIOR_KINDS name: extra input from estimation/constraint_prior

    @property
    def n_features(self) -> int:
        """Input features per time step: 6 per IMU (acc m/s^2, gyr rad/s), then the prior's."""
        return 6 * len(self.imus) + (self.n_outputs if self.prior else 0)

    @property
    def n_outputs(self) -> int:
        """Output values per time step."""
        return sum(ENCODING_SIZE[o.encoding] for o in self.outputs)

    @property
    def onnx_path(self) -> Path:
        """Absolute path of the ONNX file."""
        base = self.path.parent if self.path else Path(".")
        return base / self.onnx_file

    def to_json(self) -> dict[str, Any]:
        """The card as written to disk."""
        return {
            "schema": SCHEMA, "name": self.name, "onnx_file": self.onnx_file,
            "sha256": self.sha256, "chain": self.chain, "bodies": list(self.bodies),
            "imus": list(self.imus), "rate_hz": self.rate_hz,
            "input": {"name": self.input_name,
                      "layout": "per imu: acc_x acc_y acc_z gyr_x gyr_y gyr_z" + (
                          "; then the outputs as the constraint estimators give them "
                          "(pipeline/estimation/constraint_prior.py)" if self.prior else ""),
                      "units": ["m/s^2", "rad/s"], "frame": "sensor",
                      "features": self.n_features,
                      **({"prior": self.prior} if self.prior else {})},
            "state": [dict(asdict(s), shape=list(s.shape)) for s in self.state],
            "outputs": {"name": self.output_name, "bodies": [asdict(o) for o in self.outputs]},
            "training": self.training, "heldout": self.heldout,
        }


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path_for(model: Path) -> Path:
    """The card beside an ONNX file (``x.onnx`` -> ``x.json``), or the card itself."""
    return model if model.suffix == ".json" else model.with_suffix(".json")


def load_card(path: str | Path, *, verify_hash: bool = True) -> ModelCard:
    """Read and check a card (given the card or its ONNX file); raise ModelRejected if bad."""
    path = card_path_for(Path(path))
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelRejected(f"{path}: model card not found; every model in models/ needs a "
                            "card beside its .onnx file (see pipeline/evaluation/model_card.py)") from None
    except (OSError, ValueError) as exc:
        raise ModelRejected(f"{path}: model card is not readable JSON: {exc}") from None
    if d.get("schema") != SCHEMA:
        raise ModelRejected(f"{path}: 'schema' must be '{SCHEMA}', got {d.get('schema')!r}")
    try:
        card = ModelCard(
            name=d["name"], onnx_file=d["onnx_file"], sha256=d["sha256"], chain=d["chain"],
            bodies=tuple(d["bodies"]), imus=tuple(d["imus"]), rate_hz=float(d["rate_hz"]),
            input_name=d["input"]["name"],
            state=tuple(StateTensor(s["input"], s["output"], tuple(s["shape"]))
                        for s in d["state"]),
            output_name=d["outputs"]["name"],
            outputs=tuple(OutputBody(o["body"], o["encoding"]) for o in d["outputs"]["bodies"]),
            training=d.get("training", {}), heldout=d.get("heldout", {}), path=path,
            prior=str(d["input"].get("prior", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelRejected(f"{path}: model card field missing or malformed: {exc!r}") from None
    if card.prior not in ("", *PRIOR_KINDS):
        raise ModelRejected(f"{path}: input 'prior' must be one of {list(PRIOR_KINDS)}, got "
                            f"'{card.prior}'")
    for o in card.outputs:
        if o.encoding not in ENCODING_SIZE:
            raise ModelRejected(f"{path}: output body '{o.body}': encoding must be one of "
                                f"{list(ENCODING_SIZE)}, got '{o.encoding}'")
        if o.body not in card.bodies:
            raise ModelRejected(f"{path}: output body '{o.body}' is not in 'bodies'")
        if o.encoding == "up" and o.body != card.bodies[0]:
            raise ModelRejected(f"{path}: output body '{o.body}': encoding 'up' is for the "
                                f"root '{card.bodies[0]}' only; use 'quat' or 'sincos'")
    if verify_hash:
        onnx = card.onnx_path
        if not onnx.exists():
            raise ModelRejected(f"{path}: ONNX file '{onnx}' not found")
        digest = sha256_of(onnx)
        if digest != card.sha256:
            raise ModelRejected(f"{path}: sha256 of {onnx.name} is {digest[:12]}..., card says "
                                f"{card.sha256[:12]}...; the file changed after the card was "
                                "written")
    return card


def write_card(card: ModelCard, path: Path) -> None:
    """Write ``card`` as JSON to ``path``."""
    path.write_text(json.dumps(card.to_json(), indent=1) + "\n")
