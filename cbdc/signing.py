"""ECDSA P-256 signatures: deterministic (RFC 6979) on sign, low-S enforced on verify.

Signatures are DER-encoded. `sign` always emits the low-S form, and `verify` refuses
the high-S twin of a valid signature and any DER that does not re-encode to the same
bytes, so each message has exactly one valid signature per key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

# Order of the P-256 group.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HALF_ORDER = P256_ORDER // 2
_ALGORITHM = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A P-256 private key that signs deterministically."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the key is not an ECDSA P-256 private key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public(self) -> VerifyingKey:
        return VerifyingKey(self.private.public_key())

    def sign(self, message: bytes) -> bytes:
        """DER signature of SHA-256(message), RFC 6979 nonce, normalised to low S."""
        r, s = decode_dss_signature(self.private.sign(message, _ALGORITHM))
        if s > _HALF_ORDER:
            s = P256_ORDER - s
        return encode_dss_signature(r, s)


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """A P-256 public key."""

    public: ec.EllipticCurvePublicKey

    @classmethod
    def from_pem(cls, pem: bytes) -> VerifyingKey:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("the key is not an ECDSA P-256 public key")
        return cls(key)

    @classmethod
    def from_der(cls, der: bytes) -> VerifyingKey:
        key = serialization.load_der_public_key(der)
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("the key is not an ECDSA P-256 public key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def to_der(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True only for the canonical low-S DER signature of message."""
        try:
            r, s = decode_dss_signature(signature)
        except ValueError:
            return False
        if not (0 < r < P256_ORDER and 0 < s <= _HALF_ORDER):
            return False
        if encode_dss_signature(r, s) != signature:
            return False  # non-canonical DER (padding, long-form lengths, trailing bytes)
        try:
            self.public.verify(signature, message, _ALGORITHM)
        except InvalidSignature:
            return False
        return True
