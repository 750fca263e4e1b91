"""What every headless-Chromium test needs: node, the system Chromium, playwright-core, and
the environment for the node script (tests/browser.js is its launch helper).

Every browser test FAILS (never skips) when a tool is missing: scripts/install-test-deps
installs them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / ".test-tools" / "node_modules"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def require_browser_tools() -> str:
    """The node executable; fails the test, naming what is missing, when a tool is absent."""
    node = shutil.which("node")
    missing = [
        what
        for what, present in (
            ("node", node is not None),
            (CHROMIUM, Path(CHROMIUM).exists()),
            (str(NODE_MODULES / "playwright-core"), (NODE_MODULES / "playwright-core").is_dir()),
        )
        if not present
    ]
    if missing or node is None:
        pytest.fail(
            f"browser test tools missing ({', '.join(missing)}): run scripts/install-test-deps"
        )
    return node


def browser_env() -> dict[str, str]:
    """The environment of a node script using tests/browser.js."""
    return {**os.environ, "NODE_PATH": str(NODE_MODULES), "CHROMIUM": CHROMIUM}
