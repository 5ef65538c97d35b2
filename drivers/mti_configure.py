"""Non-blocking MTi set-up: GoToConfig -> SetOutputConfiguration -> GoToMeasurement, acked step by step.

Each command is written once, then the driver's normal reads deliver the
device's answers (kept by :class:`drivers.serial.xbus.XbusParser` in
``messages``); :meth:`MtiConfigurator.step` checks them on every poll, so the
node never blocks waiting for the device. See docs/hardware-protocols.md 2.3, 2.5.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from drivers.serial import xbus
from pipeline.runtime.errors import DeviceTimeout, ImuflowError

_log = logging.getLogger("imuflow.mti_configure")


class MtiRejected(ImuflowError):
    """The MTi answered a configuration command with an Error message (MID 0x42)."""


class MtiConfigurator:
    """Walk an MTi through the three set-up commands without blocking.

    Args:
        rate_hz: output rate of acc/gyr(/mag), Hz (1..65534; the device must support it).
        with_mag: also request the magnetic field (a.u.).
        ack_timeout_s: time to wait for each acknowledgement before resending.
        attempts: sends per command before giving up with DeviceTimeout.
    """

    def __init__(self, rate_hz: int, with_mag: bool = True, ack_timeout_s: float = 0.5,
                 attempts: int = 4) -> None:
        self._steps = [
            ("GoToConfig", xbus.go_to_config(), xbus.MID_GOTO_CONFIG_ACK),
            ("SetOutputConfiguration", xbus.set_output_imu(rate_hz, with_mag),
             xbus.MID_OUTPUT_CONFIGURATION_ACK),
            ("GoToMeasurement", xbus.go_to_measurement(), xbus.MID_GOTO_MEASUREMENT_ACK),
        ]
        self._timeout_s = ack_timeout_s
        self._attempts = attempts
        self._index = 0
        self._sent = 0
        self._sent_at = 0.0

    @property
    def done(self) -> bool:
        """True once GoToMeasurement was acknowledged."""
        return self._index >= len(self._steps)

    def begin(self, write: Callable[[bytes], object]) -> None:
        """Start over (after opening the port): send GoToConfig."""
        self._index = 0
        self._send(write)

    def _send(self, write: Callable[[bytes], object]) -> None:
        name, frame, _ = self._steps[self._index]
        write(frame)
        self._sent += 1
        self._sent_at = time.monotonic()
        _log.debug("sent %s (%s), attempt %d", name, frame.hex(" "), self._sent)

    def step(self, messages: list[tuple[int, bytes]], write: Callable[[bytes], object]) -> bool:
        """Consume device answers (the list is emptied); send the next command; return done."""
        answers = list(messages)
        messages.clear()
        while not self.done:
            name, _, ack = self._steps[self._index]
            for mid, data in answers:
                if mid == xbus.MID_ERROR:
                    code = data[0] if data else -1
                    raise MtiRejected(f"MTi answered {name} with Error 0x{code:02X}; check that "
                                      "the rate is supported by this model (MTi-1: up to 100 Hz "
                                      "for some outputs) and that the port is an MTi")
            if any(mid == ack for mid, _ in answers):
                _log.info("MTi acknowledged %s", name)
                answers = [(m, d) for m, d in answers if m != ack]
                self._index += 1
                self._sent = 0
                if not self.done:
                    self._send(write)
                continue
            if time.monotonic() - self._sent_at > self._timeout_s:
                if self._sent >= self._attempts:
                    raise DeviceTimeout(f"MTi did not acknowledge {name} after {self._sent} "
                                        f"tries of {self._timeout_s:g} s; check baudrate and "
                                        "protocol, or set configure: false")
                self._send(write)
            break
        return self.done
