"""Shared test set-up: offline hub, the real data root, small helpers."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # as vad_turn.core.onnx.import_onnxruntime does

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from vad_turn.core.config import default_data_root  # noqa: E402


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real corpora (../shared/data); tests that need them skip when absent."""
    root = default_data_root()
    if not root.exists():
        pytest.skip(f"real data root {root} not present")
    return root
