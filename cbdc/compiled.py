"""Which modules setup.py compiles with mypyc, and whether their extensions are current.

Standard library only: setup.py imports this before anything is installed.

The compiled modules are the ledger's per-transfer path: the state machine that decides
each transfer, its id maps, the encoding of each entry, the Merkle sealing of each
block and the packing of a batch's rows for COPY. They stay plain typed Python; a machine
without a C compiler runs them as such.
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
    "settlement/rows.py",
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


def source_digests(root: Path = ROOT) -> dict[str, str]:
    """The sha256 of each compiled module's source, as `COMPILED_STAMP` records them."""
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in COMPILED}


def stale_extensions(root: Path = ROOT) -> list[str]:
    """The sources whose compiled module beside them was built from other text (an edit
    since the last install): Python would import the old compiled code, not the edit."""
    stamp = root / COMPILED_STAMP
    built = json.loads(stamp.read_text()) if stamp.exists() else {}
    current = source_digests(root)
    return [path for path in COMPILED
            if extension_of(root / path) is not None and built.get(path) != current[path]]


def is_compiled(module_file: str | None) -> bool:
    """Whether a module was imported from a compiled extension."""
    return module_file is not None and module_file.endswith(tuple(EXTENSION_SUFFIXES))
