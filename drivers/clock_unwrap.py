"""`ClockUnwrap`: wrapping device counter -> monotonically increasing int64 ns."""

from __future__ import annotations

import logging

_log = logging.getLogger("imuflow.clock_unwrap")


class ClockUnwrap:
    """Unwrap a device tick counter that wraps at `modulus` into int ns (or ticks).

    A forward step of up to `max_forward_ticks` (default: half the modulus) is
    taken as elapsed time, across a wrap if needed. Any other step is a backward
    jump: a device reboot/reset (or a very long outage). It is reported
    (`resets`, `last_was_reset`) and the output continues `reset_step_ns` after
    the previous output, so the result never decreases.

    Args:
        modulus: the raw counter wraps from modulus-1 to 0 (e.g. 2**32).
        tick_ns_num: ns per tick, numerator (1 us ticks: 1000).
        tick_ns_den: ns per tick, denominator (exact integer arithmetic).
        max_forward_ticks: largest forward step accepted as elapsed time.
        reset_step_ns: output increment applied across a detected reset, ns.
    """

    __slots__ = (
        "modulus", "_num", "_den", "_max_fwd", "_reset_step", "_last_raw", "_ticks",
        "_base_ns", "_last_ns", "resets", "wraps", "last_was_reset",
    )

    def __init__(
        self,
        modulus: int,
        tick_ns_num: int = 1,
        tick_ns_den: int = 1,
        max_forward_ticks: int | None = None,
        reset_step_ns: int = 1,
    ) -> None:
        if modulus <= 1 or tick_ns_num <= 0 or tick_ns_den <= 0:
            raise ValueError(
                f"ClockUnwrap: modulus ({modulus}) must be > 1 and tick ratio "
                f"({tick_ns_num}/{tick_ns_den}) positive"
            )
        self.modulus = modulus
        self._num = tick_ns_num
        self._den = tick_ns_den
        self._max_fwd = modulus // 2 if max_forward_ticks is None else max_forward_ticks
        self._reset_step = reset_step_ns
        self._last_raw: int | None = None
        self._ticks = 0  # unwrapped ticks since the current segment's origin
        self._base_ns = 0  # output ns of the current segment's tick 0
        self._last_ns = -1
        self.resets = 0
        self.wraps = 0
        self.last_was_reset = False

    def update(self, raw: int) -> int:
        """Feed one raw counter value (0 <= raw < modulus); return unwrapped ns."""
        last = self._last_raw
        if last is not None:
            delta = (raw - last) % self.modulus
            if delta <= self._max_fwd:  # fast path: time went forward (maybe across a wrap)
                if raw < last:
                    self.wraps += 1
                self._last_raw = raw
                self._ticks = ticks = self._ticks + delta
                self._last_ns = ns = self._base_ns + ticks * self._num // self._den
                self.last_was_reset = False
                return ns
        return self._first_or_reset(raw)

    def _first_or_reset(self, raw: int) -> int:
        """Handle the first value and backward jumps (device reset)."""
        last = self._last_raw
        if last is None:
            self.last_was_reset = False
            raw %= self.modulus
        else:
            self.resets += 1
            self.last_was_reset = True
            _log.warning(
                "device clock stepped back from %d to %d (modulus %d): reset #%d",
                last, raw, self.modulus, self.resets,
            )
            self._base_ns = self._last_ns + self._reset_step - raw * self._num // self._den
        self._ticks = raw
        self._last_raw = raw
        self._last_ns = ns = self._base_ns + raw * self._num // self._den
        return ns
