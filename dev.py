#!/usr/bin/env python3
"""Developer entry point; needs nothing but Python 3.11+ (standard library only).

    python3 dev.py up [cbdc up options]   install into .venv if needed, then `cbdc up`
    python3 dev.py test [pytest options]  install, lint-imports, ruff, mypy, then pytest
    python3 dev.py check                  install, then only the three linters

The install (`pip install -e .[dev]` into .venv) is skipped while pyproject.toml, setup.py
and the sources setup.py compiles are unchanged: a stamp file in .venv records the sha256
they were installed from. An edit to a compiled module so reinstalls it, and the compiled
extension follows the edit.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".cbdc-installed-from"
USAGE = "usage: python3 dev.py {up,test,check} [arguments...]"


def executable(name: str) -> Path:
    """A program installed in the virtual environment."""
    if os.name == "nt":
        return VENV / "Scripts" / f"{name}.exe"
    return VENV / "bin" / name


def ensure_installed() -> None:
    python = executable("python")
    if not python.exists():
        print("dev.py: creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = installed_from()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print("dev.py: installing the project into .venv (pip install -e .[dev])", file=sys.stderr)
    # pip's and the build backend's chatter is shown only when the install fails.
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-e", ".[dev]"],
        check=False, capture_output=True, text=True,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        sys.exit(result.returncode)
    STAMP.write_text(wanted + "\n")


def installed_from() -> str:
    """One sha256 over everything the install builds from."""
    from cbdc.compiled import COMPILED  # standard library only

    digest = hashlib.sha256()
    for path in ("pyproject.toml", "setup.py", *COMPILED):
        digest.update(path.encode() + b"\0" + (ROOT / path).read_bytes())
    return digest.hexdigest()


def checks() -> list[list[str]]:
    return [
        [str(executable("lint-imports"))],
        [str(executable("ruff")), "check", "."],
        [str(executable("mypy"))],
    ]


def run_in_order(commands: list[list[str]]) -> int:
    """Run each command; stop at the first that fails and return its exit code."""
    for command in commands:
        shown = " ".join([Path(command[0]).name, *command[1:]])
        print(f"dev.py: {shown}", file=sys.stderr, flush=True)
        code = subprocess.run(command, check=False).returncode
        if code != 0:
            return code
    return 0


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command not in {"up", "test", "check"} or (command == "check" and rest):
        print(USAGE, file=sys.stderr)
        return 2
    os.chdir(ROOT)  # every path below, and the tools' configuration, is the repo's
    ensure_installed()
    if command == "up":
        cbdc = executable("cbdc")
        os.execv(cbdc, [str(cbdc), "up", *rest])
    if command == "check":
        return run_in_order(checks())
    return run_in_order([*checks(), [str(executable("python")), "-m", "pytest", *rest]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
