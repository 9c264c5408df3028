"""The README's first command, as a new user runs it: `cbdc up` on the embedded stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cbdc.processes import unused_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cbdc_up_brings_the_system_up_and_runs_the_demos(tmp_path: Path) -> None:
    """On a machine with nothing configured, `cbdc up` starts the embedded PostgreSQL and
    Redis, applies the migrations, and the ledger, the central bank and two commercial
    banks answer: the demo receipts verify, the e-CNY supply balances, and a tester's
    wallet at bank A pays one at bank B. A second start applies nothing and finds the
    same wallets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env |= {"CBDC_DATA_DIR": str(tmp_path / "data"),
            "CBDC_CENTRAL_BANK_PORT": str(unused_port()),
            "CBDC_BANKS": f"BANKA:{unused_port()},BANKB:{unused_port()}"}
    command = [sys.executable, "-m", "cbdc.cli", "up", "--no-serve"]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=240, check=False)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "PostgreSQL: embedded" in out
    assert "migrations: applied central_bank/0001_operators.sql" in out
    assert "audit: ledger 1: OK" in out
    assert "verified with the published ledger key" in out
    assert ": balanced" in out, out
    assert "alice pays bob" in out
    assert "¥88.88: settled" in out
    assert "bob: class 4, balance ¥88.88" in out
    assert "Traceback" not in first.stderr

    reconciled = subprocess.run([sys.executable, "-m", "cbdc.cli", "reconcile"], cwd=REPO_ROOT,
                                env=env, capture_output=True, text=True, timeout=120,
                                check=False)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "reconciled: clean" in reconciled.stdout

    second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=240, check=False)
    assert second.returncode == 0, second.stderr
    assert "migrations: nothing to apply" in second.stdout
    assert "bob: class 4, balance ¥177.76" in second.stdout  # the same wallets, paid again
