"""The ledger core runs compiled (mypyc) where the install could compile it, and as the
same plain Python where it could not; an edit never hides behind an old extension."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import settlement.core.state
from cbdc.compiled import (
    COMPILED,
    COMPILED_STAMP,
    ROOT,
    is_compiled,
    source_digests,
    stale_extensions,
)

CORE_TESTS = ["tests/unit/test_core_rules.py", "tests/unit/test_core_model.py",
              "tests/unit/test_core_checkpoints.py"]


def _tree_with_extension(tmp_path: Path, source_text: bytes) -> Path:
    """A tree holding the compiled sources, one of them with an extension beside it."""
    for path in COMPILED:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes((ROOT / path).read_bytes())
    state = tmp_path / "settlement/core/state.py"
    (tmp_path / "settlement/core" / ("state" + EXTENSION_SUFFIXES[0])).write_bytes(b"")
    (tmp_path / COMPILED_STAMP).write_text(json.dumps(source_digests(tmp_path)))
    state.write_bytes(source_text)
    return tmp_path


def test_an_extension_built_from_the_source_is_current(tmp_path: Path) -> None:
    source = (ROOT / "settlement/core/state.py").read_bytes()
    assert stale_extensions(_tree_with_extension(tmp_path, source)) == []


def test_an_edit_after_compiling_is_named(tmp_path: Path) -> None:
    edited = (ROOT / "settlement/core/state.py").read_bytes() + b"\n# an edit\n"
    assert stale_extensions(_tree_with_extension(tmp_path, edited)) == [
        "settlement/core/state.py"]


def test_an_extension_without_a_record_is_stale(tmp_path: Path) -> None:
    root = _tree_with_extension(tmp_path, (ROOT / "settlement/core/state.py").read_bytes())
    (root / COMPILED_STAMP).unlink()
    assert stale_extensions(root) == ["settlement/core/state.py"]


def test_the_core_runs_compiled_exactly_where_the_install_compiled_it() -> None:
    """Compiled where the install recorded a build, pure Python where it did not (no C
    compiler, or CBDC_PURE_PYTHON=1)."""
    assert is_compiled(settlement.core.state.__file__) == (ROOT / COMPILED_STAMP).exists()


@pytest.mark.slow
def test_the_core_rules_hold_in_pure_python(tmp_path: Path) -> None:
    """The core's rule and model tests, on a copy of the sources with no extensions."""
    ignore = shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    for package in ("cbdc", "settlement", "tests"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    where = subprocess.run(
        [sys.executable, "-c", "import settlement.core.state as s; print(s.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(tmp_path / "settlement/core/state.py")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_TESTS],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
