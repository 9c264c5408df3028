"""The README's first command, as a new user runs it: `cbdc up` on the embedded stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import unused_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cbdc_up_brings_the_system_up_and_runs_the_demos(tmp_path: Path) -> None:
    """On a machine with nothing configured, `cbdc up` starts the embedded PostgreSQL and
    Redis, applies the migrations, and the ledger and the central bank answer: the demo
    receipts verify and the e-CNY supply balances. A second start applies nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env |= {"CBDC_DATA_DIR": str(tmp_path / "data"),
            "CBDC_CENTRAL_BANK_PORT": str(unused_port())}
    command = [sys.executable, "-m", "cbdc.cli", "up", "--no-serve"]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=240, check=False)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "PostgreSQL: embedded" in out
    assert "migrations: applied central_bank/0001_operators.sql" in out
    assert "audit: ledger 1: OK" in out
    assert "verified with the published ledger key" in out
    assert out.rstrip().endswith(": balanced"), out
    assert "Traceback" not in first.stderr

    second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=240, check=False)
    assert second.returncode == 0, second.stderr
    assert "migrations: nothing to apply" in second.stdout
    assert second.stdout.rstrip().endswith(": balanced")
