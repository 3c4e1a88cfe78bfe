"""Shared test set-up: offline hub, the real data root, the built datasets, small helpers.

Data a test needs is required, never optional: `require_data` and `require_built` (and the `data_root`
fixture) fail, not skip, naming where the data must be and how to get it, so a run without the corpora
or the built datasets cannot pass while checking nothing. Test modules import them:
`from conftest import require_built, require_data` (tests/ is on sys.path, as for `fixtures`)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # as vad_turn.core.onnx.import_onnxruntime does

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from vad_turn.core.config import REPO_ROOT, default_built_root, default_data_root  # noqa: E402

GET_DATA = "clone next to ../shared (or set VAD_TURN_DATA_ROOT) - the corpora are read in place"


def _shown(path: Path) -> str:
    """`path` relative to the repository when inside it (data/built/switchboard), else absolute."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(path)


def require_data(*parts: str) -> Path:
    """The real corpora (`default_data_root()`: $VAD_TURN_DATA_ROOT or ../shared/data), or the path
    `parts` inside them. Fails (never skips) when either is absent, saying where the data must be."""
    root = default_data_root()
    if not root.is_dir():
        pytest.fail(f"real data root {root} not found: {GET_DATA}", pytrace=False)
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} not found in the real data root {root}: the shared data is incomplete ({GET_DATA})",
                    pytrace=False)
    return path


def require_built(name: str) -> Path:
    """The built dataset `name` (under `default_built_root()`: $VAD_TURN_BUILT_ROOT or data/built).
    Fails (never skips) when it is not built, naming `make test-data`."""
    path = default_built_root() / name
    if not path.exists():
        pytest.fail(f"{_shown(path)} is not built: run `make test-data` (it needs the real data root "
                    f"{default_data_root()})", pytrace=False)
    return path


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real corpora (../shared/data or $VAD_TURN_DATA_ROOT); fails when absent (see `require_data`)."""
    return require_data()
