"""Credentials: media tokens (Ed25519, verified by relays offline) and node credentials (HMAC).

Media tokens are short-lived and scoped: which stream, which direction, which
subject (hall, relay or participant), which relay may accept it, and when it
expires. The orchestrator holds the private key; relays hold only the public key,
so a compromised relay cannot mint tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MEDIA_PREFIX = "dcm1"
NODE_PREFIX = "dcn1"


class TokenError(Exception):
    """A token was rejected; the message says why (safe to return to the caller)."""


class MediaClaims(msgspec.Struct, frozen=True, omit_defaults=True):
    sub: str  # who: hall id, relay id, participant id, "studio"
    stream: str  # which stream
    dir: str  # "pub" or "sub"
    exp: int  # unix seconds
    aud: str = "*"  # relay id that may accept it, or "*"
    jti: str = ""
    once: bool = False  # single use: it opens one session, and never another (not even after DELETE)


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(text + pad)
    except (ValueError, TypeError):
        raise TokenError("token is not valid base64url") from None


_claims_encoder = msgspec.json.Encoder()
_claims_decoder = msgspec.json.Decoder(MediaClaims)


class MediaTokenSigner:
    """Mints media tokens with the orchestrator's Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def generate(cls) -> "MediaTokenSigner":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> "MediaTokenSigner":
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise TokenError("media signing key must be an Ed25519 private key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def verifier(self) -> "MediaTokenVerifier":
        return MediaTokenVerifier(self._key.public_key())

    def public_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def mint(
        self, sub: str, stream: str, direction: str, ttl_s: float, aud: str = "*", once: bool = False
    ) -> str:
        if direction not in ("pub", "sub"):
            raise ValueError("direction must be 'pub' or 'sub'")
        claims = MediaClaims(
            sub=sub,
            stream=stream,
            dir=direction,
            exp=int(time.time() + ttl_s),
            aud=aud,
            jti=secrets.token_hex(8),
            once=once,
        )
        body = _b64e(_claims_encoder.encode(claims))
        sig = _b64e(self._key.sign(f"{MEDIA_PREFIX}.{body}".encode()))
        return f"{MEDIA_PREFIX}.{body}.{sig}"


class MediaTokenVerifier:
    """Verifies media tokens with the public key only (no round trip to the orchestrator)."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key

    @classmethod
    def from_pem(cls, pem: bytes) -> "MediaTokenVerifier":
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise TokenError("media verify key must be an Ed25519 public key")
        return cls(key)

    def verify(
        self,
        token: str,
        stream: str,
        direction: str,
        audience: str,
        now: float | None = None,
    ) -> MediaClaims:
        claims = self.claims(token, now)
        if claims.stream != stream:
            raise TokenError(f"media token is for stream {claims.stream!r}, not {stream!r}")
        if claims.dir != direction:
            raise TokenError(f"media token allows {claims.dir!r}, not {direction!r}")
        if claims.aud not in ("*", audience):
            raise TokenError(f"media token is for relay {claims.aud!r}, not {audience!r}")
        return claims

    def claims(self, token: str, now: float | None = None) -> MediaClaims:
        """The claims of a token whose signature and expiry are good (scope not checked)."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != MEDIA_PREFIX or not token.isascii():
            raise TokenError("not a diemcau media token")
        try:
            self._key.verify(_b64d(parts[2]), f"{parts[0]}.{parts[1]}".encode())
        except InvalidSignature:
            raise TokenError("media token signature is invalid") from None
        try:
            claims = _claims_decoder.decode(_b64d(parts[1]))
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            raise TokenError("media token claims are malformed") from None
        if claims.exp < (time.time() if now is None else now):
            raise TokenError("media token has expired")
        return claims


def node_credential(node_key: bytes, node_id: str, generation: int = 0) -> str:
    """The credential a hall or relay presents on the control channel.

    Generation 0 is the one the deployment derives; an operator who re-issues a node's credential
    (a hall's PC was stolen) moves the node to the next generation, and older ones stop working.
    """
    if generation:
        mac = hmac.new(node_key, f"node:{node_id}:{generation}".encode(), hashlib.sha256).hexdigest()[:40]
        return f"{NODE_PREFIX}.{node_id}.g{generation}.{mac}"
    mac = hmac.new(node_key, f"node:{node_id}".encode(), hashlib.sha256).hexdigest()[:40]
    return f"{NODE_PREFIX}.{node_id}.{mac}"


def credential_generation(credential: str) -> int:
    """The generation of a (verified) node credential."""
    parts = credential.split(".")
    return int(parts[2][1:]) if len(parts) == 4 else 0


def verify_node_credential(node_key: bytes, credential: str) -> str:
    """Return the node id the credential proves, or raise TokenError."""
    parts = credential.split(".")
    if len(parts) not in (3, 4) or parts[0] != NODE_PREFIX or not parts[1] or not credential.isascii():
        raise TokenError("not a diemcau node credential")
    if len(parts) == 4 and not (parts[2].startswith("g") and parts[2][1:].isdigit() and 0 < len(parts[2]) <= 10
                                and int(parts[2][1:]) > 0):
        raise TokenError("not a diemcau node credential")
    expected = node_credential(node_key, parts[1], credential_generation(credential))
    if not hmac.compare_digest(expected.encode(), credential.encode()):
        raise TokenError(f"credential for node {parts[1]!r} is invalid")
    return parts[1]


def bearer(header: str | None) -> str | None:
    """Extract the token from an `Authorization: Bearer ...` header value."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class SecretsBundle(msgspec.Struct):
    """Secrets of one deployment: read from files named by env vars, or generated for a demo."""

    node_key: bytes
    media_private_pem: bytes | None
    media_public_pem: bytes

    @classmethod
    def generate(cls) -> "SecretsBundle":
        signer = MediaTokenSigner.generate()
        return cls(
            node_key=secrets.token_bytes(32),
            media_private_pem=signer.private_pem(),
            media_public_pem=signer.public_pem(),
        )

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, data in (
            ("node.key", self.node_key.hex().encode()),
            ("media.key", self.media_private_pem or b""),
            ("media.pub", self.media_public_pem),
        ):
            path = directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
