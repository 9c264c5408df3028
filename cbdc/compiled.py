"""Which modules setup.py compiles with mypyc, and whether their extensions are current.

Standard library only: setup.py imports this before anything is installed.

The compiled modules are the ledger's per-transfer path: the state machine that decides
each transfer, its id maps, and the Merkle sealing of each block. They stay plain typed
Python; a machine without a C compiler runs them as such.
"""

from __future__ import annotations

import hashlib
import json
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

COMPILED = (
    "settlement/core/state.py",
    "settlement/core/idmap.py",
    "settlement/blocks.py",
    "cbdc/merkle.py",
    "cbdc/receipts.py",
)
# Beside setup.py: the sha256 of each source its extensions were built from.
COMPILED_STAMP = ".cbdc-compiled.json"

ROOT = Path(__file__).resolve().parent.parent


def extension_of(source: Path) -> Path | None:
    """The compiled module that shadows `source` in its folder, if there is one."""
    for suffix in EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def stale_extensions(root: Path = ROOT) -> list[str]:
    """The sources whose compiled module beside them was built from other text (an edit
    since the last install): Python would import the old compiled code, not the edit."""
    stamp = root / COMPILED_STAMP
    built = json.loads(stamp.read_text()) if stamp.exists() else {}
    stale = []
    for path in COMPILED:
        source = root / path
        if extension_of(source) is None:
            continue
        if built.get(path) != hashlib.sha256(source.read_bytes()).hexdigest():
            stale.append(path)
    return stale


def is_compiled(module_file: str | None) -> bool:
    """Whether a module was imported from a compiled extension."""
    return module_file is not None and module_file.endswith(tuple(EXTENSION_SUFFIXES))
