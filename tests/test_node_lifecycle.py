"""Every registered processing node survives a graph that ends before any data arrived."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.recording.session_reader import SessionReader
from pipeline.runtime.node import GraphContext, Source
from pipeline.runtime.registry import aliases, resolve

REPO = Path(__file__).resolve().parents[1]


def params_for(alias: str, tmp_path: Path) -> dict:
    return {"observer": {"model": str(REPO / "models" / "knee.onnx")},
            "recorder": {"path": str(tmp_path / "rec.mcap")},
            "sequence_check": {"report": tmp_path / "r.json"},
            "viewer": {"headless": True}}.get(alias, {})


@pytest.mark.parametrize("alias", sorted(a for a in aliases()
                                         if not issubclass(resolve(a), Source)))
def test_end_of_stream_before_any_input(alias, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    ctx = GraphContext(config_file=REPO / "configs" / "default.yaml",
                       chain_file=REPO / "configs" / "chains" / "knee.yaml",
                       model_dirs=(REPO / "models",), run_dir=tmp_path)
    node = resolve(alias).create(alias, context=ctx, **params_for(alias, tmp_path))
    node.on_eos()
    node.teardown()
    assert [b for b in node.emitted if b.n] == []  # nothing made up without input
    if alias == "recorder":  # a finished, empty session (summary written, not torn)
        with SessionReader(tmp_path / "rec.mcap") as reader:
            assert not reader.truncated
            assert sum(len(run) for runs in reader.runs() for run in runs) == 0
    if alias == "sequence_check":
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["received"] == 0 and report["lost"] == 0
