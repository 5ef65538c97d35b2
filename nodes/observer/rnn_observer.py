"""RNN observer node: IMU frames in, chain joint state out, from an ONNX recurrent model.

See docs/observer.md for the model checks, the missing-data and reset rules and
the hot-swap protocol.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from nodes.observer.decode_frame import warm_up_decode
from nodes.observer.fit import chain_for, check_chain, fit_model, prior_for
from nodes.observer.runner import FrameRing, ObserverRunner
from nodes.observer.session import ObserverSession, find_model, load_session
from pipeline.calibration.calibration_file import joint_levers_for
from pipeline.estimation.constraint_prior import warm_up_prior
from pipeline.evaluation.model_card import load_card
from pipeline.runtime.errors import ModelRejected
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import GraphContext, Node
from pipeline.runtime.ports import Input
from pipeline.runtime.sensor_check import require_sensors
from pipeline.runtime.streams import FRAME, STATE, state_dtype

SWAP_IDLE_S = 0.5  # a prepared swap not picked up by a message within this is done by the loader
RING_EXTRA_S = 10.0  # ring buffer length beyond warmup_s: frames arriving during a warm-up


@dataclass
class _Prepared:
    """A loaded, checked and warmed model waiting to be switched in."""

    runner: ObserverRunner
    next_frame: int  # first ring frame the runner has not seen yet
    future: concurrent.futures.Future
    reply: dict
    switched: threading.Event


class RnnObserver(Node):
    """Estimate the chain's joint state from IMU frames with an ONNX recurrent model.

    Ports:
        frame: imu.frame (acc m/s^2, gyr rad/s, sensor frame; ``info.meta["imus"]`` names
            the sensors, ``info.rate_hz`` the rate).
        chain.state (out): one sample per input frame, ``t_host`` passed through; ``q_rel``
            (n_bodies, 4) w,x,y,z body to parent (root: heading-free inclination when the model
            outputs it, identity for bodies it does not estimate); ``angle`` (n_hinge,) rad in
            chain order (0 for hinges it does not estimate). Gap flag when the input had a gap
            or a frame was held (MISSING/INVALID sensor).

    Commands: ``reset``; ``swap {"model": path}`` (returns when the new model runs, or with
    ok false and the reason); ``model`` (what runs now).
    """

    inputs: ClassVar[dict[str, Input]] = {"frame": Input(accepts=(FRAME,))}
    outputs = (STATE,)

    @dataclass(frozen=True)
    class Params:
        model: Path  # .onnx file or its card .json, inside the graph's model_dirs
        reset_gap_s: float = 0.5  # reset the hidden state after an input gap longer than this, s
        warmup_s: float = 2.0  # seconds of recent input that warm a swapped-in model's state
        mode: Literal["step", "block"] = "step"  # one model step per frame, or one run per block
        # one-frame steps: compiled GRU kernel when it matches onnxruntime (nodes/observer/gru_step.py)
        step_engine: Literal["auto", "onnxruntime"] = "auto"
        # a calibration file (imuflow calibrate) whose joint centres a hybrid model's prior uses
        # in place of the chain's IMU positions; empty: the chain's positions
        joint_centres: str = ""

        def __post_init__(self) -> None:
            if self.reset_gap_s <= 0 or self.warmup_s < 0:
                raise ValueError("reset_gap_s must be > 0 and warmup_s >= 0")

    @classmethod
    def sensors_out(cls, params: Params, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """The model's IMUs (from its card) must all arrive in the frames."""
        try:
            card = load_card(find_model(context.resolve(params.model), context.model_dirs),
                             verify_hash=False)
        except (ModelRejected, OSError, ValueError):
            return upstream  # setup refuses the model with the reason
        require_sensors(f"model '{card.name}' needs IMUs", list(card.imus), upstream)
        return upstream

    @classmethod
    def check_files(cls, params: Params, context: GraphContext) -> None:
        """The model loads (card, hash, ONNX IO, inside model_dirs) and fits its chain."""
        cfg = context.config_file
        search = (cfg.parent, cfg.parent.parent) if cfg else ()
        path = context.resolve(params.model)
        session = load_session(path if path.exists() else Path(params.model),
                               context.model_dirs, params.step_engine)
        check_chain(session.card, chain_for(session.card, context.chain_file, search), search)

    # -- lifecycle -------------------------------------------------------------------------------
    def setup(self) -> None:
        self._lock = threading.Lock()  # held by on_block for a whole message, and by a switch
        self._loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"{self.id}-load")
        cfg = self.context.config_file
        self._search = (cfg.parent, cfg.parent.parent) if cfg else ()
        session = self._load(self.params.model)
        self.chain = chain_for(session.card, self.context.chain_file, self._search)
        check_chain(session.card, self.chain, self._search)
        self._levers = (joint_levers_for(self.chain, self.context.resolve(
            self.params.joint_centres), self.id, self.log) if self.params.joint_centres else {})
        warm_up_decode()
        if session.card.prior:  # built anew at the first block; its kernels load now
            warm_up_prior(prior_for(session.card, self.chain, session.card.rate_hz,
                                    self._levers))
        self._session = session  # the configured model, bound to the stream at the first block
        self._runner: ObserverRunner | None = None
        self._in_info: StreamInfo | None = None
        self._imus: list[str] = []
        self._rate_hz = 0.0
        self._ring: FrameRing | None = None
        self._ready: _Prepared | None = None
        self._out_dtype = state_dtype(self.chain.n_bodies, len(self.chain.hinge_bodies))
        self._swaps = self._refused = self._resets_done = self._held = 0
        self._update_extra(session)

    def teardown(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)

    def _load(self, model: str | Path) -> ObserverSession:
        path = self.context.resolve(model)
        return load_session(path if path.exists() else Path(model), self.context.model_dirs,
                            self.params.step_engine)

    # -- data --------------------------------------------------------------------------------------
    def on_block(self, port: str, block: Block) -> None:
        frames = block.data
        out = np.empty(len(frames), dtype=self._out_dtype)
        out["t_host"] = frames["t_host"]
        with self._lock:
            if block.info is not self._in_info:
                self._bind(block.info)
            if self._ready is not None:
                self._switch(self._ready, by="node")
            held = self._runner.process(frames, out)
            self._ring.push(frames)
        n_held = int(np.count_nonzero(held))
        self._held += n_held
        self.stats.extra["resets"] = self._resets_done + self._runner.resets
        self.stats.extra["held_frames"] = self._held
        self.emit(STATE, out, t_host=block.t_host, gap=block.gap or n_held > 0)

    def _bind(self, info: StreamInfo) -> None:
        """Check the model against a (new) input stream; keep the state if it is the same."""
        imus = list(info.meta.get("imus") or [])
        if not imus:
            raise ModelRejected(f"node '{self.id}': input stream {info.stream} has no "
                                "meta['imus'] (sensor names in order); it must be an imu.frame "
                                "stream built with pipeline.runtime.streams.frame_info")
        if self._runner is not None and imus == self._imus and info.rate_hz == self._rate_hz:
            self._in_info = info
            return
        session = self._runner.session if self._runner else self._session
        fit = fit_model(session.card, self.chain, imus, info.rate_hz, self._search, self._levers)
        self._imus, self._rate_hz, self._in_info = imus, info.rate_hz, info
        if self._runner is None:
            cap = int((self.params.warmup_s + RING_EXTRA_S) * max(info.rate_hz, 1.0)) + 64
            self._ring = FrameRing(info.np_dtype, cap)
        else:
            self._resets_done += self._runner.resets + 1
        self._runner = ObserverRunner(session, fit, self.params.reset_gap_s,
                                      self.params.mode == "block")
        self._declare(session, fit.estimated)
        self.log.info("model %s bound to %s: IMUs %s at %g Hz", session.name, info.stream,
                      imus, info.rate_hz)

    def _declare(self, session: ObserverSession, estimated: tuple[str, ...]) -> None:
        dt = self._out_dtype
        hinges = [self.chain.body_names[i] for i in self.chain.hinge_bodies]
        self.declare(STATE, StreamInfo.for_array(
            f"{self.id}/{STATE}", STATE, dt, rate_hz=self._rate_hz, channels=dt.names,
            units=("ns", "1", "rad"), meta={
                "chain": self.chain.name, "bodies": list(self.chain.body_names),
                "hinges": hinges, "estimated": list(estimated), "model": session.name,
                "sha256": session.card.sha256, "frame": "q_rel: body to parent (root: earth)"}))

    def _update_extra(self, session: ObserverSession) -> None:
        self.stats.extra.update(model=session.name, sha256=session.card.sha256[:12],
                                swaps=self._swaps, refused_swaps=self._refused,
                                mode=self.params.mode, step_engine=session.step_engine)

    # -- commands -------------------------------------------------------------------------------
    def on_command(self, command: str, args: dict) -> Any:
        if command == "reset":
            if self._runner is not None:
                self._runner.reset()
            self.stats.extra["resets"] = self._resets_done + (self._runner.resets
                                                              if self._runner else 0)
            return {"ok": True, "model": self._current().name,
                    "resets": self.stats.extra["resets"]}
        if command == "swap":
            return self._start_swap(args)
        if command == "model":
            card = self._current().card
            return {"ok": True, "model": card.name, "sha256": card.sha256, "imus": card.imus,
                    "rate_hz": card.rate_hz, "chain": card.chain, "mode": self.params.mode,
                    "swaps": self._swaps, "step_engine": self._current().step_engine}
        return super().on_command(command, args)

    def _current(self) -> ObserverSession:
        return self._runner.session if self._runner else self._session

    def _start_swap(self, args: dict) -> Any:
        model = args.get("model")
        if not isinstance(model, str) or not model:
            return {"ok": False, "reason": "swap needs args {\"model\": \"path/to/model.onnx\"}"}
        if self._runner is None:
            return {"ok": False, "reason": "no input has arrived yet, so the new model cannot "
                    "be checked against the input stream; swap once data flows",
                    "old": self._session.name}
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            warm_n = round(self.params.warmup_s * self._rate_hz)
            frames, _ = self._ring.since(self._ring.count - warm_n)
            end = self._ring.count
        self._loader.submit(self._prepare, model, frames, end, future)
        return future

    def _prepare(self, model: str, frames: np.ndarray, next_frame: int,
                 future: concurrent.futures.Future) -> None:
        """Loader thread: load, check and warm the new model, then hand it to the node thread."""
        old = self._current().name
        try:
            t0 = time.perf_counter()
            session = self._load(model)
            t1 = time.perf_counter()
            fit = fit_model(session.card, self.chain, self._imus, self._rate_hz, self._search,
                            self._levers)
            t2 = time.perf_counter()
            runner = ObserverRunner(session, fit, self.params.reset_gap_s, block_mode=True)
            self._warm_and_check(runner, frames)
            t3 = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - refused: reported to the caller and logged
            self._refused += 1
            self.stats.extra["refused_swaps"] = self._refused
            self.log.warning("swap to %s refused, %s keeps running: %s", model, old, exc)
            reason = str(exc) if isinstance(exc, ModelRejected) else f"{type(exc).__name__}: {exc}"
            future.set_result({"ok": False, "reason": reason, "model": old, "requested": model})
            return
        reply = {"ok": True, "old": old, "new": session.name, "sha256": session.card.sha256[:12],
                 "load_ms": round((t1 - t0) * 1e3, 3), "check_ms": round((t2 - t1) * 1e3, 3),
                 "warmup_ms": round((t3 - t2) * 1e3, 3), "warmup_frames": len(frames)}
        prepared = _Prepared(runner, next_frame, future, reply, threading.Event())
        self._catch_up(prepared)  # most of the frames that arrived meanwhile, off the hot path
        with self._lock:
            self._ready = prepared
        if not prepared.switched.wait(SWAP_IDLE_S):
            with self._lock:  # no message came (idle stream): switch here, between messages
                if self._ready is prepared:
                    self._switch(prepared, by="loader")

    def _warm_and_check(self, runner: ObserverRunner, frames: np.ndarray) -> None:
        """Warm ``runner`` on ``frames``; ModelRejected if its outputs or state are not finite.

        With no warm-up frames (warmup_s 0) the newest frame is checked on a scratch runner.
        """
        check = runner
        if not len(frames):
            with self._lock:
                frames, _ = self._ring.since(self._ring.count - 1)
            check = ObserverRunner(runner.session, runner.fit, self.params.reset_gap_s, True)
        out = np.zeros(len(frames), dtype=self._out_dtype)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # judged below
            held = check.process(frames, out) if len(frames) else np.zeros(0, bool)
        fed = ~held
        bad = int(np.count_nonzero(~np.isfinite(out["q_rel"][fed]).all(axis=(1, 2))
                                   | ~np.isfinite(out["angle"][fed]).all(axis=1)))
        if bad or not all(np.isfinite(s).all() for s in check.state):
            raise ModelRejected(
                f"model {runner.session.name} gives non-finite outputs (NaN or inf) on "
                f"{bad or 'its state after'} of the {int(fed.sum())} warm-up frames; "
                "refused (check its weights and the training run)")

    def _catch_up(self, prepared: _Prepared) -> None:
        """Feed the new model the frames that arrived since it was warmed (lock taken briefly)."""
        with self._lock:
            frames, start = self._ring.since(prepared.next_frame)
        self._advance(prepared, frames, start)

    @staticmethod
    def _advance(prepared: _Prepared, frames: np.ndarray, start: int) -> None:
        prepared.runner.advance(frames)
        lost = start - prepared.next_frame  # frames that left the ring before the model saw them
        prepared.reply["catchup_lost"] = prepared.reply.get("catchup_lost", 0) + lost
        prepared.reply["catchup_frames"] = prepared.reply.get("catchup_frames", 0) + len(frames)
        prepared.next_frame = start + len(frames)

    def _switch(self, prepared: _Prepared, by: str) -> None:
        """Swap the running model for ``prepared`` (caller holds the lock: between messages)."""
        t0 = time.perf_counter()
        frames, start = self._ring.since(prepared.next_frame)
        self._advance(prepared, frames, start)
        runner = prepared.runner
        runner.block_mode = self.params.mode == "block"
        self._resets_done += self._runner.resets
        runner.resets = 0
        self._runner = runner
        self._ready = None
        self._swaps += 1
        self._declare(runner.session, runner.fit.estimated)
        self._update_extra(runner.session)
        prepared.reply.update(switched_by=by, switch_ms=round((time.perf_counter() - t0) * 1e3, 3),
                              swaps=self._swaps)
        self.log.info("swapped model %s -> %s", prepared.reply["old"], prepared.reply["new"])
        prepared.switched.set()
        prepared.future.set_result(prepared.reply)
