"""The `cbdc` processes' event loop: uvloop where it is installed, asyncio's semantics."""

from __future__ import annotations

import asyncio
import sys

import pytest

from cbdc import loops


def test_a_service_runs_on_uvloop() -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    expected = "asyncio" if sys.platform == "win32" else "uvloop"
    assert loops.run(loop_module()).split(".")[0] == expected


def test_run_returns_the_result_and_raises_the_error_as_asyncio_run_does() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise LookupError("no such transfer")

    assert loops.run(answer()) == 42
    with pytest.raises(LookupError, match="no such transfer"):
        loops.run(fail())
