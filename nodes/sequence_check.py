"""SequenceCheck: a test sink that checks integer streams for loss, duplicates and order."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.runtime.message import Block
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input


class SequenceCheck(Node):
    """Check that integer samples arrive as 0, 1, 2, ...; write a JSON report at the end.

    Ports:
        in: (n,) integer samples (e.g. from ``Counter``), one or more sources.
    The report (``report`` param) lists received count, lost, duplicated and
    out-of-order samples, and the gaps flagged by the runtime.
    """

    inputs = {"in": Input(accepts=("*",), many=True)}

    @dataclass(frozen=True)
    class Params:
        report: Path  # JSON file written at end of stream and on teardown
        hold_until: Path | None = None  # hold the first block until this file exists (a
        # stalled consumer, for fault-injection tests)

    def setup(self) -> None:
        self._expected: dict[str, int] = {}
        self._r = {"received": 0, "lost": 0, "duplicated": 0, "out_of_order": 0,
                   "gaps_flagged": 0, "blocks": 0}

    def on_block(self, port: str, block: Block) -> None:
        r = self._r
        if r["blocks"] == 0 and self.params.hold_until is not None:
            while not self.params.hold_until.exists():
                time.sleep(0.01)
        r["blocks"] += 1
        r["gaps_flagged"] += int(block.gap)
        data = np.asarray(block.data).ravel()
        if data.size == 0:
            return
        r["received"] += int(data.size)
        stream = block.info.stream
        exp = self._expected.get(stream, 0)
        if data[0] > exp:
            r["lost"] += int(data[0] - exp)
        elif data[0] < exp:
            r["duplicated"] += int(min(exp - data[0], data.size))
        steps = np.diff(data)
        r["out_of_order"] += int(np.count_nonzero(steps != 1))
        self._expected[stream] = int(data[-1]) + 1
        self.stats.extra["last_value"] = int(data[-1])

    def on_eos(self) -> None:
        self._write()

    def teardown(self) -> None:
        self._write()

    def _write(self) -> None:
        path = self.params.report
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(self._r, expected_next=self._expected), indent=1))
        tmp.replace(path)
