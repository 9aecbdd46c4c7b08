import time

import pytest

from diemcau.tokens import (
    MediaTokenSigner,
    MediaTokenVerifier,
    TokenError,
    bearer,
    node_credential,
    verify_node_credential,
)


def test_media_token_round_trip_carries_scope(signer, verifier):
    tok = signer.mint("HN-01", "programme", "sub", 60, aud="north-1")
    claims = verifier.verify(tok, "programme", "sub", "north-1")
    assert claims.sub == "HN-01" and claims.stream == "programme" and claims.dir == "sub"


@pytest.mark.parametrize(
    "stream,direction,audience,message",
    [
        ("other", "sub", "north-1", "is for stream"),
        ("programme", "pub", "north-1", "allows"),
        ("programme", "sub", "south-1", "is for relay"),
    ],
)
def test_media_token_rejected_outside_its_scope(signer, verifier, stream, direction, audience, message):
    tok = signer.mint("HN-01", "programme", "sub", 60, aud="north-1")
    with pytest.raises(TokenError, match=message):
        verifier.verify(tok, stream, direction, audience)


def test_expired_media_token_is_rejected(signer, verifier):
    tok = signer.mint("HN-01", "programme", "sub", 60)
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(tok, "programme", "sub", "x", now=time.time() + 120)


def test_token_signed_by_another_key_is_rejected(verifier):
    other = MediaTokenSigner.generate().mint("HN-01", "programme", "sub", 60)
    with pytest.raises(TokenError, match="signature"):
        verifier.verify(other, "programme", "sub", "x")


@pytest.mark.parametrize("junk", ["", "abc", "dcm1.x.y", "dcm1..", "dcm1.!!!.???", "a.b.c.d"])
def test_malformed_media_tokens_are_rejected_cleanly(verifier, junk):
    with pytest.raises(TokenError):
        verifier.verify(junk, "programme", "sub", "x")


def test_tampered_claims_fail_the_signature(signer, verifier):
    tok = signer.mint("HN-01", "programme", "sub", 60)
    head, body, sig = tok.split(".")
    forged = signer.mint("HN-02", "programme", "pub", 60).split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        verifier.verify(f"{head}.{forged}.{sig}", "programme", "pub", "x")


def test_public_key_alone_verifies(signer):
    v = MediaTokenVerifier.from_pem(signer.public_pem())
    assert v.verify(signer.mint("a", "s", "pub", 5), "s", "pub", "r").sub == "a"


def test_node_credentials_prove_the_node_and_nothing_else():
    key = b"k" * 32
    cred = node_credential(key, "HN-01")
    assert verify_node_credential(key, cred) == "HN-01"
    with pytest.raises(TokenError):
        verify_node_credential(b"x" * 32, cred)
    with pytest.raises(TokenError):
        verify_node_credential(key, cred.replace("HN-01", "HN-02"))
    with pytest.raises(TokenError):
        verify_node_credential(key, "garbage")


def test_bearer_header_parsing():
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None
