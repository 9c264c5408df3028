"""A transfer batch decoded in two steps (unchecked twin, then every pattern at once)
answers exactly as decoding it into wire.TransferBatch does."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbdc import wire
from cbdc.problems import ProblemError, read_json, read_json_checked


@dataclasses.dataclass
class FakeRequest:
    """What read_json looks at in an aiohttp request."""

    body: bytes
    client_max_size: int = 64 * 1024 * 1024

    @property
    def content_length(self) -> int:
        return len(self.body)

    async def read(self) -> bytes:
        return self.body


def answer(coroutine: Any) -> tuple[str, Any]:
    """("ok", the batch as builtins) or ("problem", everything the client would see)."""
    try:
        batch = asyncio.run(coroutine)
    except ProblemError as exc:
        return ("problem", (exc.status, exc.type, exc.title, exc.detail, exc.field, exc.rule))
    return ("ok", msgspec.to_builtins(batch))


def both(body: bytes) -> tuple[tuple[str, Any], tuple[str, Any]]:
    two_steps = answer(read_json_checked(
        FakeRequest(body), wire.UncheckedTransferBatch,  # type: ignore[arg-type]
        lambda batch: wire.batch_patterns_hold(batch.transfers), wire.TransferBatch))
    reference = answer(read_json(FakeRequest(body), wire.TransferBatch))  # type: ignore[arg-type]
    return two_steps, reference


def test_the_twins_differ_only_by_their_patterns() -> None:
    def fields(cls: type) -> dict[str, Any]:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        return {f.name: (f.type, f.required, f.default) for f in info.fields} | {
            "forbid_unknown_fields": info.forbid_unknown_fields}

    def without_patterns(node: Any) -> Any:
        """The type without patterns or documentation (descriptions check nothing)."""
        if isinstance(node, msgspec.inspect.Metadata):
            return without_patterns(node.type)
        if isinstance(node, msgspec.inspect.StrType):
            return msgspec.structs.replace(node, pattern=None)
        if isinstance(node, msgspec.inspect.UnionType):
            return msgspec.structs.replace(node, types=tuple(map(without_patterns, node.types)))
        if isinstance(node, tuple):
            return tuple(map(without_patterns, node))
        return node

    strict = {k: without_patterns(v) for k, v in fields(wire.InterbankTransfer).items()}
    twin = {k: without_patterns(v) for k, v in fields(wire.UncheckedInterbankTransfer).items()}
    assert twin == strict
    [strict_list] = msgspec.inspect.type_info(wire.TransferBatch).fields  # type: ignore[attr-defined]
    [twin_list] = msgspec.inspect.type_info(wire.UncheckedTransferBatch).fields  # type: ignore[attr-defined]
    assert (strict_list.type.min_length, strict_list.type.max_length) \
        == (twin_list.type.min_length, twin_list.type.max_length) == (1, wire.MAX_BATCH)


GOOD = {"id": "0192c4e0-7c1e-7b2a-9d41-00000000000a", "payee_bank": "BANKB", "amount": 25,
        "payer_ref": "banka:w1", "payee_ref": "bankb:w2"}
# Values near the patterns' edges: empty, too long, a newline inside or at the end
# (re.search lets "$" match before a final newline), lower case, non-ASCII.
TEXT = st.one_of(
    st.sampled_from(["BANKB", "B", "BANKBBANKBBANKB", "bankb", "BANKB\n", "BA\nNKB", "",
                     "banka:w1", "a b", "x" * 64, "x" * 65, "wallet\n", "é", "0192c4e0",
                     GOOD["id"], GOOD["id"].upper(), GOOD["id"] + "\n", GOOD["id"][:-1] + "g",
                     "{" + GOOD["id"] + "}"]),
    st.text(alphabet="AZaz09._:-\n é{}", max_size=70),
)
FIELD = st.sampled_from(["id", "payee_bank", "payer_ref", "payee_ref", "memo_ref", "amount"])


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    size = draw(st.integers(min_value=0, max_value=6))
    items = []
    for index in range(size):
        item = dict(GOOD, id=GOOD["id"][:-2] + f"{index:02x}")
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            field = draw(FIELD)
            if field == "amount":
                item[field] = draw(st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, "1", 1.5]))
            else:
                item[field] = draw(TEXT)
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            item[draw(st.sampled_from(["extra", "amount", "payee_ref"]))] = None
        items.append(item)
    return json.dumps({"transfers": items}).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_two_steps_answer_as_the_reference_does(body: bytes) -> None:
    two_steps, reference = both(body)
    assert two_steps == reference


def test_a_good_batch_passes_the_pattern_check() -> None:
    items = [dict(GOOD, id=GOOD["id"][:-4] + f"{i:04x}") for i in range(wire.MAX_BATCH)]
    batch = msgspec.json.decode(json.dumps({"transfers": items}), type=wire.UncheckedTransferBatch)
    assert wire.batch_patterns_hold(batch.transfers)


@pytest.mark.parametrize(("field", "value"), [
    ("id", GOOD["id"] + "\n"), ("payee_bank", "BANKB\n"), ("payer_ref", "a\nb"),
    ("payee_ref", "wallet\n"), ("payee_bank", "bankb"), ("id", "{" + GOOD["id"] + "}"),
])
def test_the_pattern_check_leaves_doubtful_values_to_the_reference(field: str, value: str
                                                                   ) -> None:
    items = [GOOD, dict(GOOD, **{field: value})]
    batch = msgspec.json.decode(json.dumps({"transfers": items}), type=wire.UncheckedTransferBatch)
    assert not wire.batch_patterns_hold(batch.transfers)
    two_steps, reference = both(json.dumps({"transfers": items}).encode())
    assert two_steps == reference
