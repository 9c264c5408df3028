"""`cbdc up` at a terminal ends in the demo wallet, the services still running; quitting
the wallet stops them all. Driven through a pseudo-terminal, as a tester types."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from cbdc.processes import unused_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(rb"\x1b\[[0-9;?<>]*[a-zA-Z]")

pytestmark = [pytest.mark.tui, pytest.mark.slow]


class Terminal:
    """A child process on a pseudo-terminal of 80x24, and what it has written."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the command
            os.chdir(REPO_ROOT)
            os.execve(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.output = b""

    def wait_for(self, pattern: bytes, seconds: float) -> re.Match[bytes]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    break
        tail = ANSI.sub(b"", self.output[-2000:]).decode(errors="replace")
        raise AssertionError(f"no {pattern!r} on the terminal; it shows:\n{tail}")

    def type(self, text: str) -> None:
        for char in text:
            os.write(self.fd, char.encode())
            time.sleep(0.01)

    def exit_code(self, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            select.select([self.fd], [], [], 0.2)
            with contextlib.suppress(OSError):  # the child closed the terminal
                self.output += os.read(self.fd, 65536)
        os.kill(self.pid, 9)
        raise AssertionError("cbdc up did not stop after the wallet was closed")


def test_cbdc_up_at_a_terminal_opens_the_demo_wallet(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBDC_")}
    env |= {"CBDC_DATA_DIR": str(tmp_path / "data"),
            "CBDC_CENTRAL_BANK_PORT": str(unused_port()),
            "CBDC_BANKS": f"BANKA:{unused_port()},BANKB:{unused_port()}",
            "TERM": "xterm-256color", "TZ": "Asia/Shanghai"}
    terminal = Terminal([sys.executable, "-m", "cbdc.cli", "up"], env)
    found = terminal.wait_for(rb"passphrase (\S+) \(also in", 240)
    passphrase = found.group(1).decode()
    assert (tmp_path / "data" / "wallet-passphrase").read_text().strip() == passphrase
    terminal.wait_for(rb"press Enter to open the wallet", 10)
    terminal.type("\r")
    terminal.wait_for(rb"Passphrase", 60)
    terminal.type(passphrase + "\r")
    terminal.wait_for(rb"Balance", 60)  # unlocked, logged in at bank A: alice's home
    terminal.wait_for(rb"411\.12", 30)  # her balance after the demo paid bob
    terminal.type("\x11")  # Ctrl+Q
    terminal.wait_for(rb"stopping the services", 30)
    assert terminal.exit_code(60) == 0
    assert b"Traceback" not in terminal.output
