"""cbdc.signing: deterministic ECDSA P-256 (RFC 6979), low S, strict DER."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given
from hypothesis import strategies as st

from cbdc.signing import P256_ORDER, SigningKey, VerifyingKey

# The RFC 6979 vectors, high-S and DER checks are part of the reliability suite too.
pytestmark = pytest.mark.reliability

N = P256_ORDER
# RFC 6979 appendix A.2.5: ECDSA, 256 bits (prime field), with SHA-256.
RFC_KEY = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
RFC_UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
RFC_UY = 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299
RFC_VECTORS = {
    b"sample": (0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
                0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8),
    b"test": (0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
              0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083),
}


@pytest.fixture(scope="module")
def rfc_key() -> SigningKey:
    return SigningKey(ec.derive_private_key(RFC_KEY, ec.SECP256R1()))


def der_length(n: int, long_form: bool = False) -> bytes:
    return bytes([0x81, n]) if long_form or n >= 0x80 else bytes([n])


def der_integer(value: int, pad: int = 0, long_form: bool = False) -> bytes:
    """DER INTEGER, minimal unless extra leading zeros or a long-form length are asked for."""
    body = bytes(pad) + value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + der_length(len(body), long_form) + body


def der_signature(r: int, s: int, *, pad_r: int = 0, pad_s: int = 0,
                  long_r: bool = False, long_sequence: bool = False) -> bytes:
    body = der_integer(r, pad_r, long_r) + der_integer(s, pad_s)
    return b"\x30" + der_length(len(body), long_sequence) + body


def test_rfc6979_public_key(rfc_key: SigningKey) -> None:
    """The RFC's private key gives the RFC's public key."""
    numbers = rfc_key.public.public.public_numbers()
    assert (numbers.x, numbers.y) == (RFC_UX, RFC_UY)


@pytest.mark.parametrize("message", sorted(RFC_VECTORS))
def test_rfc6979_vectors(rfc_key: SigningKey, message: bytes) -> None:
    """sign() gives the RFC's r, and its s normalised to the low half (min(s, n-s))."""
    expected_r, expected_s = RFC_VECTORS[message]
    signature = rfc_key.sign(message)
    assert decode_dss_signature(signature) == (expected_r, min(expected_s, N - expected_s))
    assert signature == der_signature(expected_r, min(expected_s, N - expected_s))
    assert rfc_key.public.verify(signature, message)


def test_rfc_high_s_signature_is_refused(rfc_key: SigningKey) -> None:
    """The RFC's own "sample" signature has a high S: valid ECDSA, but refused here."""
    r, s = RFC_VECTORS[b"sample"]
    assert s > N // 2
    high = encode_dss_signature(r, s)
    rfc_key.public.public.verify(high, b"sample", ec.ECDSA(hashes.SHA256()))  # plain ECDSA: ok
    assert not rfc_key.public.verify(high, b"sample")
    assert rfc_key.public.verify(encode_dss_signature(r, N - s), b"sample")


@given(st.binary(max_size=64))
def test_signatures_are_deterministic_low_s_and_unique(message: bytes) -> None:
    """Any message: the same signature every time, S in the low half, and its high-S
    twin (also valid plain ECDSA) refused."""
    key = SigningKey(ec.derive_private_key(RFC_KEY, ec.SECP256R1()))
    signature = key.sign(message)
    assert key.sign(message) == signature
    r, s = decode_dss_signature(signature)
    assert 0 < s <= N // 2
    assert key.public.verify(signature, message)
    twin = encode_dss_signature(r, N - s)
    key.public.public.verify(twin, message, ec.ECDSA(hashes.SHA256()))
    assert not key.public.verify(twin, message)


def test_wrong_message_or_key_is_refused(rfc_key: SigningKey) -> None:
    """A signature holds for its message and key only."""
    signature = rfc_key.sign(b"pay 100 fen")
    assert not rfc_key.public.verify(signature, b"pay 101 fen")
    assert not SigningKey.generate().public.verify(signature, b"pay 100 fen")
    with pytest.raises(InvalidSignature):
        rfc_key.public.public.verify(signature, b"pay 101 fen", ec.ECDSA(hashes.SHA256()))


def non_canonical_forms(signature: bytes) -> dict[str, bytes]:
    r, s = decode_dss_signature(signature)
    assert der_signature(r, s) == signature  # the helpers build the canonical form
    body = signature[2:]
    return {
        "extra leading zero in r": der_signature(r, s, pad_r=1),
        "extra leading zero in s": der_signature(r, s, pad_s=1),
        "trailing byte": signature + b"\x00",
        "trailing garbage": signature + b"\x30\x00",
        "long-form sequence length": der_signature(r, s, long_sequence=True),
        "long-form integer length": der_signature(r, s, long_r=True),
        "sequence length one too long": b"\x30" + bytes([len(body) + 1]) + body,
        "sequence length one too short": b"\x30" + bytes([len(body) - 1]) + body,
        "truncated": signature[:-1],
        "empty": b"",
        "raw r||s instead of DER": r.to_bytes(32, "big") + s.to_bytes(32, "big"),
    }


@pytest.mark.parametrize("form", sorted(non_canonical_forms(
    SigningKey(ec.derive_private_key(RFC_KEY, ec.SECP256R1())).sign(b"test"))))
def test_non_canonical_der_is_refused(rfc_key: SigningKey, form: str) -> None:
    """Only the one canonical DER encoding of a signature verifies."""
    signature = rfc_key.sign(b"test")
    assert rfc_key.public.verify(signature, b"test")
    assert not rfc_key.public.verify(non_canonical_forms(signature)[form], b"test")


@pytest.mark.parametrize(("r", "s"), [
    (0, 1), (1, 0), (N, 1), (1, N), (N + 1, 1), (1, N // 2 + 1),
])
def test_out_of_range_components_are_refused(rfc_key: SigningKey, r: int, s: int) -> None:
    """r and s outside 1..n-1, or s above n/2, never verify (and never raise)."""
    assert not rfc_key.public.verify(encode_dss_signature(r, s), b"test")


def test_keys_round_trip_through_pem_and_der(rfc_key: SigningKey) -> None:
    """A key written out and read back signs and verifies the same."""
    again = SigningKey.from_pem(rfc_key.to_pem())
    assert again.sign(b"test") == rfc_key.sign(b"test")
    public = VerifyingKey.from_pem(rfc_key.public.to_pem())
    assert public.verify(rfc_key.sign(b"test"), b"test")
    assert VerifyingKey.from_der(rfc_key.public.to_der()).to_der() == rfc_key.public.to_der()


def test_keys_of_another_curve_are_refused() -> None:
    """A P-384 key is not accepted as a P-256 key."""
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        SigningKey.from_pem(SigningKey(other).to_pem())
    with pytest.raises(ValueError, match="P-256"):
        VerifyingKey.from_der(VerifyingKey(other.public_key()).to_der())
