"""Dynamics node: chain state in, joint torques out (Newton-Euler, optionally plus a learned model).

See docs/dynamics.md for the velocity/acceleration estimation, its delay and the model swap.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from nodes.dynamics.gyro import GyroRates, root_acceleration
from nodes.dynamics.learned import LearnedDynamics, load_dynamics_card
from pipeline.dynamics.differentiator import Differentiator, StateToQ
from pipeline.dynamics.rigid_body import InverseDynamics, dof_units
from pipeline.kinematics.chain import Chain, load_chain
from pipeline.kinematics.inertia import MissingInertia, Subject
from pipeline.kinematics.quaternion import np_qconj, np_qmul, np_qrotate
from pipeline.runtime.errors import ConfigError, ModelRejected
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import GraphContext, Node
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import FRAME, STATE, TORQUE, TRUTH, torque_dtype

FEATURES_KEPT_S = 12.0  # seconds of model inputs kept to warm a swapped-in model


class Dynamics(Node):
    """Joint torques from the chain state by recursive Newton-Euler over the segment inertias.

    Ports:
        state: chain.state or chain.truth (q_rel (n_bodies, 4) w,x,y,z body to parent; hinge
            angle rad); ``info.rate_hz`` (or params.rate_hz) is the frame rate.
        imu: imu.frame (optional): gyroscope rates (rad/s, sensor frame) give the rates of the
            hinges whose body and parent carry an IMU (or whose parent is the earth), and a
            free root's IMU gives the root's linear acceleration (acc m/s^2: specific force);
            frames are paired with states by t_host (within half a period).
        chain.torque (out): one sample per state frame once the differentiating window is
            full; ``t_host`` is that of the frame the estimate belongs to (``delay_s`` in the
            stream meta behind the newest input); tau (n_dof,) N m / N, residual (6,) N, N m
            (earth frame, about the root origin), qd and qdd used.

    Commands: ``model`` (what runs), ``swap {"model": path}`` (a learned model; "" for the
    rigid-body model alone), ``reset`` (forget the window and the model state).
    """

    inputs: ClassVar[dict[str, Input]] = {"state": Input(accepts=(STATE, TRUTH)),
                                          "imu": Input(accepts=(FRAME,), required=False)}
    outputs = (TORQUE,)

    @dataclass(frozen=True)
    class Params:
        chain: Path | None = None  # chain YAML with inertia; default: the graph's `chain:`
        window: int = 7  # samples of the Savitzky-Golay fit (quadratic), >= 3
        evaluate: Literal["centre", "newest"] = "centre"  # centre: delay (window-1)/2 frames
        gyro: bool = True  # hinge rates from gyroscopes when an imu input carries them
        root_acc: bool = True  # a free root's linear acceleration from its IMU's accelerometer
        rate_hz: float = 0.0  # frame rate; 0: the state stream's rate_hz
        subject_mass_kg: float = 0.0  # > 0: scale anthropometric inertia to this subject
        subject_height_m: float = 0.0
        subject_sex: Literal["male", "female"] = "male"
        model: Path | None = None  # learned model (.onnx or its card) on top of Newton-Euler
        warmup_s: float = 2.0  # seconds of recent input that warm a swapped-in model's state

        def __post_init__(self) -> None:
            if self.window < 3 or self.rate_hz < 0 or self.warmup_s < 0:
                raise ValueError("window >= 3, rate_hz >= 0 and warmup_s >= 0 required")
            if (self.subject_mass_kg > 0) != (self.subject_height_m > 0):
                raise ValueError("give both subject_mass_kg and subject_height_m, or neither")

    @classmethod
    def check_files(cls, params: Params, context: GraphContext) -> None:
        """The chain loads and has inertia for every body; the model loads and fits it."""
        chain = _chain(params, context, "")
        _dynamics(chain, params, "")
        if params.model is not None:
            _fit(load_dynamics_card(context.resolve(params.model), context.model_dirs), chain)

    # -- lifecycle -------------------------------------------------------------------------------
    def setup(self) -> None:
        self.chain = _chain(self.params, self.context, f"node '{self.id}': ")
        self.dyn = _dynamics(self.chain, self.params, f"node '{self.id}': ")
        self.hinge_dofs = np.array([self.chain.qd_start[i] for i in self.chain.hinge_bodies],
                                   dtype=np.int64)
        self.hinge_q = np.array([self.chain.q_start[i] for i in self.chain.hinge_bodies],
                                dtype=np.int64)
        self._lock = threading.Lock()
        self._loader = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"{self.id}-load")
        self.model: LearnedDynamics | None = None
        self._model_dofs = np.zeros(0, np.int64)
        if self.params.model is not None:
            self._set_model(self._load(str(self.params.model)))
        self.diff: Differentiator | None = None
        self._to_q = StateToQ(self.chain)
        self.gyro: GyroRates | None = None
        self._gyro_imus: list[str] = []
        self._dtype = torque_dtype(self.chain.nqd)
        self._rate_hz = 0.0
        self._last_t: int | None = None
        self._ready: tuple[LearnedDynamics | None, concurrent.futures.Future, dict] | None = None
        self.stats.extra.update(resets=0, gyro_frames=0, root_acc_frames=0, swaps=0,
                                model=self._model_name())
        self.dyn.torques(self.chain.q_zero(), np.zeros(self.chain.nqd), np.zeros(self.chain.nqd))

    def teardown(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)

    def _model_name(self) -> str:
        return self.model.card.name if self.model else "rigid-body"

    # -- data --------------------------------------------------------------------------------------
    def on_block(self, port: str, block: Block) -> None:
        if port == "imu":
            self._keep_imu(block)
            return
        data = block.data
        with self._lock:
            if self._ready is not None:
                self._switch()
            if self.diff is None:
                self._bind(block.info)
            out = self._process(data, block.gap)
        if len(out):
            self.emit(TORQUE, out, t_host=int(out["t_host"][0]), gap=block.gap)

    def _bind(self, info: StreamInfo) -> None:
        rate = self.params.rate_hz or info.rate_hz
        if not rate or rate <= 0:
            raise ConfigError(f"node '{self.id}': the state stream {info.stream} has no rate_hz; "
                              "set params.rate_hz (Hz)", key="rate_hz")
        self._rate_hz = float(rate)
        self.diff = Differentiator(self.chain, rate, self.params.window, self.params.evaluate)
        n = int(FEATURES_KEPT_S * rate) + 1
        self._features = np.zeros((n, 3 * len(self.hinge_dofs)), np.float32)
        self._n_features = 0
        self._t_ring = np.zeros(self.params.window, np.int64)
        self._qrel_ring = np.zeros((self.params.window, self.chain.n_bodies, 4))
        self._gyro_ring = np.full((self.params.window, 0), np.nan)
        self._root_ring = np.full((self.params.window, 6), np.nan)  # root IMU f, w; body axes
        self._declare()

    def _declare(self) -> None:
        d = self.diff
        gyro = ([self.chain.body_names[i] for i, _ in self.gyro.bodies]
                if self.gyro and self.params.gyro else [])
        root_acc = bool(self.gyro and self.params.root_acc and self.gyro.root_col >= 0)
        self.declare(TORQUE, StreamInfo.for_array(
            f"{self.id}/{TORQUE}", TORQUE, self._dtype, rate_hz=self._rate_hz,
            channels=self._dtype.names, units=("ns", "N m|N", "N|N m", "rad/s|m/s",
                                               "rad/s^2|m/s^2"),
            meta={"chain": self.chain.name, "dofs": self.dyn.dof_names,
                  "units": dof_units(self.chain), "delay_s": d.delay_s, "window": d.window,
                  "evaluate": self.params.evaluate, "gyro_hinges": gyro,
                  "root_acceleration": "root IMU" if root_acc else "zero (not measured)",
                  "model": self._model_name(), "floating": self.dyn.floating,
                  "residual": "force N (3), moment N m (3) on the root, earth frame"}))

    def _keep_imu(self, block: Block) -> None:
        if not (self.params.gyro or self.params.root_acc):
            return
        imus = list(block.info.meta.get("imus") or [])
        with self._lock:
            if self.gyro is None or imus != self._gyro_imus:
                rate = self.params.rate_hz or block.info.rate_hz or self._rate_hz
                self.gyro = GyroRates(self.chain, imus, rate)
                self._gyro_imus = imus
                if self.diff is not None:
                    self._declare()
            self.gyro.keep(block.data)

    def _process(self, data: np.ndarray, gap: bool) -> np.ndarray:
        """Push the frames of one state block; return the estimates that became ready."""
        d = self.diff
        q_all = self._to_q(data["q_rel"], data["angle"])
        out = np.empty(len(data), self._dtype)
        k_out = 0
        period_ns = 1e9 / self._rate_hz
        w = d.window
        for k, t in enumerate(data["t_host"].tolist()):
            if (gap and k == 0) or (self._last_t is not None
                                    and abs(t - self._last_t - period_ns) > 0.5 * period_ns):
                d.reset()
                self.stats.extra["resets"] += 1
            self._last_t = t
            row = d.count % w
            self._t_ring[row] = t
            use_gyro = self.gyro is not None and self.params.gyro
            g = self.gyro.rates(t, data["q_rel"][k]) if use_gyro else None
            if self.params.root_acc and self.gyro is not None and self.gyro.root_col >= 0:
                f = self.gyro.root_imu(t)
                self._root_ring[row] = np.nan if f is None else f
            if use_gyro and self._gyro_ring.shape[1] != len(self.gyro.dofs):
                self._gyro_ring = np.full((w, len(self.gyro.dofs)), np.nan)
            if self._gyro_ring.shape[1]:
                self._gyro_ring[row] = np.nan if g is None else g
            if not d.push(q_all[k]):
                continue
            oldest = d.count % w
            order = (oldest + np.arange(w)) % w  # the window's rings, oldest frame first
            qd, qdd = d.qd, d.qdd  # the differentiator's buffers: copied before a change
            if self._gyro_ring.shape[1]:
                ring = self._gyro_ring[order]
                if np.all(np.isfinite(ring)):
                    qd, qdd = qd.copy(), qdd.copy()
                    qd[self.gyro.dofs] = ring[d.at]
                    qdd[self.gyro.dofs] = d.c1 @ ring
                    self.stats.extra["gyro_frames"] += 1
            if self.params.root_acc and self.gyro is not None and self.gyro.root_col >= 0:
                root = self._root_ring[order]
                if np.all(np.isfinite(root)):
                    qdd = qdd.copy() if qdd is d.qdd else qdd
                    qdd[:3] = self._root_linear(d.q, root[d.at, :3], root[d.at, 3:],
                                                d.c1 @ root[:, 3:])
                    self.stats.extra["root_acc_frames"] += 1
            tau, res = self.dyn.torques(d.q, qd, qdd)
            tau = self._learned(d.q, qd, qdd, tau)
            o = out[k_out]
            o["t_host"] = self._t_ring[(oldest + d.at) % w]
            o["tau"], o["residual"], o["qd"], o["qdd"] = tau, res, qd, qdd
            k_out += 1
        return out[:k_out]

    def _root_linear(self, q: np.ndarray, force: np.ndarray, rate: np.ndarray,
                     rate_dot: np.ndarray) -> np.ndarray:
        """The free root's position acceleration (3,), joint frame, from its IMU: specific
        force, rate and its derivative (body axes) at the evaluated frame."""
        rot_j = self.chain.rotations[0]
        q_world = np_qmul(rot_j, q[3:7])  # root body -> earth
        a = root_acceleration(force, q_world, rate, rate_dot, self.gyro.root_site,
                              self.dyn.gravity)
        return np_qrotate(np_qconj(rot_j), a)

    def _learned(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray,
                 tau: np.ndarray) -> np.ndarray:
        """Keep the model input row; add the model's residual (or replace the torques)."""
        h = self.hinge_dofs
        row = np.concatenate([q[self.hinge_q], qd[h], qdd[h]])
        self._features[self._n_features % len(self._features)] = row
        self._n_features += 1
        if self.model is None:
            return tau
        m = self._model_dofs
        x = np.concatenate([row[m], row[len(h) + m], row[2 * len(h) + m]])
        y = self.model.run(x[None])[0]
        tau = tau.copy()
        dofs = h[m]
        tau[dofs] = tau[dofs] + y if self.model.card.target == "residual" else y
        return tau

    # -- models and commands ---------------------------------------------------------------------
    def _load(self, model: str) -> LearnedDynamics:
        card = load_dynamics_card(self.context.resolve(model), self.context.model_dirs)
        _fit(card, self.chain)
        return LearnedDynamics(card)

    def _set_model(self, model: LearnedDynamics | None) -> None:
        self.model = model
        names = [self.chain.body_names[i] for i in self.chain.hinge_bodies]
        self._model_dofs = (np.array([names.index(n) for n in model.card.dofs], np.int64)
                            if model else np.zeros(0, np.int64))

    def on_command(self, command: str, args: dict) -> Any:
        if command == "model":
            card = self.model.card if self.model else None
            return {"ok": True, "model": self._model_name(),
                    "sha256": card.sha256 if card else None,
                    "target": card.target if card else None,
                    "delay_s": self.diff.delay_s if self.diff else None,
                    "swaps": self.stats.extra["swaps"]}
        if command == "reset":
            with self._lock:
                if self.diff is not None:
                    self.diff.reset()
                if self.model is not None:
                    self.model.reset()
            return {"ok": True}
        if command == "swap":
            model = args.get("model")
            if not isinstance(model, str):
                return {"ok": False, "reason": "swap needs args {\"model\": \"path.onnx\"} "
                        "(\"\" for the rigid-body model alone)"}
            future: concurrent.futures.Future = concurrent.futures.Future()
            self._loader.submit(self._prepare, model, future)
            return future
        return super().on_command(command, args)

    def _prepare(self, model: str, future: concurrent.futures.Future) -> None:
        """Loader thread: load, check and warm the new model, then switch between messages."""
        old = self._model_name()
        try:
            t0 = time.perf_counter()
            new = self._load(model) if model else None
            with self._lock:
                n = min(self._n_features, len(self._features),
                        int(self.params.warmup_s * (self._rate_hz or 0)))
                idx = (self._n_features - n + np.arange(n)) % max(len(self._features), 1)
                rows = self._features[idx] if n else np.zeros((0, 0), np.float32)
            if new is not None and n:
                m, h = self._model_dofs_for(new), len(self.hinge_dofs)
                y = new.run(np.concatenate([rows[:, m], rows[:, h + m], rows[:, 2 * h + m]], 1))
                if not np.all(np.isfinite(y)):
                    raise ModelRejected(f"model {new.card.name} gives non-finite torques on the "
                                        f"{n} warm-up frames; refused")
        except Exception as exc:  # noqa: BLE001 - refused: the reason goes to the caller
            reason = str(exc) if isinstance(exc, ModelRejected) else f"{type(exc).__name__}: {exc}"
            self.log.warning("swap to %s refused, %s keeps running: %s", model, old, reason)
            future.set_result({"ok": False, "reason": reason, "model": old, "requested": model})
            return
        reply = {"ok": True, "old": old, "new": new.card.name if new else "rigid-body",
                 "warmup_frames": int(n), "load_ms": round((time.perf_counter() - t0) * 1e3, 3)}
        with self._lock:
            self._ready = (new, future, reply)
        time.sleep(0.5)  # a message normally switches it; an idle stream is switched here
        with self._lock:
            if self._ready is not None and self._ready[1] is future:
                self._switch()

    def _model_dofs_for(self, model: LearnedDynamics) -> np.ndarray:
        names = [self.chain.body_names[i] for i in self.chain.hinge_bodies]
        return np.array([names.index(n) for n in model.card.dofs], np.int64)

    def _switch(self) -> None:
        """Put the prepared model in place (caller holds the lock)."""
        new, future, reply = self._ready
        self._ready = None
        self._set_model(new)
        self.stats.extra["swaps"] += 1
        self.stats.extra["model"] = self._model_name()
        if self.diff is not None:
            self._declare()
        self.log.info("dynamics model now %s", self._model_name())
        future.set_result(reply)


def _chain(params: Dynamics.Params, context: GraphContext, who: str) -> Chain:
    path = params.chain or context.chain_file
    if path is None:
        raise ConfigError(f"{who}no chain: set params.chain or the graph's `chain:` key "
                          "(e.g. configs/chains/arm5.yaml)", key="chain")
    return load_chain(context.resolve(path))


def _dynamics(chain: Chain, params: Dynamics.Params, who: str) -> InverseDynamics:
    subject = (Subject(params.subject_mass_kg, params.subject_height_m, params.subject_sex)
               if params.subject_mass_kg > 0 else None)
    try:
        return InverseDynamics(chain, subject=subject)
    except MissingInertia as exc:
        raise ConfigError(f"{who}{exc.bare_message}", file=exc.file, key=exc.key) from None


def _fit(card: Any, chain: Chain) -> None:
    """ModelRejected unless the model's joints are hinges of ``chain``."""
    hinges = [chain.body_names[i] for i in chain.hinge_bodies]
    missing = [d for d in card.dofs if d not in hinges]
    if missing:
        raise ModelRejected(f"model {card.name} predicts joints {missing} that are not hinges of "
                            f"chain '{chain.name}' (hinges: {hinges})")
