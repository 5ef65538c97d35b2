"""`ParseStats`: counters every protocol parser keeps, exposed as a dict for node stats."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class ParseStats:
    """Mutable parser counters (all plain ints, monotonically increasing).

    Attributes:
        bytes_in: bytes fed to the parser (for BLE: notification bytes).
        frames_ok: frames/lines/notifications that passed all checks.
        checksum_errors: candidate frames rejected by their checksum.
        bytes_discarded: bytes dropped while hunting for a frame start.
        resyncs: times the parser lost frame alignment and had to hunt.
        length_errors: impossible lengths, truncated notifications, overlong lines.
        unknown_type: valid frames whose type/message id the parser does not decode.
        parse_errors: valid frames whose content could not be interpreted.
        samples: ImuSample records emitted.
        samples_incomplete: sample sets dropped because acc or gyr was missing.
        clock_resets: device clock steps backwards reported by `ClockUnwrap`.
        time_backsteps: samples whose device time did not increase (kept, counted).
    """

    bytes_in: int = 0
    frames_ok: int = 0
    checksum_errors: int = 0
    bytes_discarded: int = 0
    resyncs: int = 0
    length_errors: int = 0
    unknown_type: int = 0
    parse_errors: int = 0
    samples: int = 0
    samples_incomplete: int = 0
    clock_resets: int = 0
    time_backsteps: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return a copy of all counters as a plain dict (for `status` messages)."""
        return asdict(self)
