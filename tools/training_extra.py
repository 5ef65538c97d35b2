"""Whether the training extra (PyTorch) is installed, for tools that run without it.

The benchmarks and the held-out generator run after the runtime set-up (no torch); the
rows or subcommands that need torch say so with :data:`TRAIN_EXTRA` and are skipped.
"""

from __future__ import annotations

TRAIN_EXTRA = "pip install -e '.[train]' (or bash tools/setup.sh --dev)"


def torch_missing() -> str | None:
    """None when ``import torch`` works; else why not (installed but broken counts as missing)."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        return f"PyTorch is not installed ({exc}); the training extra: {TRAIN_EXTRA}"
    return None
