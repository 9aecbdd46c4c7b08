"""TLS for every diemcau server and client: HTTPS/WSS when a certificate is configured.

Servers (orchestrator, relays, the hall's viewer server) take a certificate and key from their
settings (`tls_cert`, `tls_key`). Clients trust the system's CAs, plus the CA bundle named by
DIEMCAU_CA_FILE when set (a private CA, as `diemcau demo --tls` makes). Certificates are checked
against the host name or IP address always: there is no switch to turn verification off.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import urllib.request
from pathlib import Path

import aiohttp

CA_ENV = "DIEMCAU_CA_FILE"


def server_context(cert: str, key: str) -> ssl.SSLContext | None:
    """The server's TLS context, or None to serve plain HTTP (no certificate configured)."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise ValueError("TLS needs both a certificate (tls_cert) and its key (tls_key)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    return ctx


def client_context() -> ssl.SSLContext | bool:
    """What aiohttp's `ssl=` takes: the default verification, plus our CA when one is named."""
    ca = os.environ.get(CA_ENV, "")
    if not ca:
        return True
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def http_session(**kw) -> aiohttp.ClientSession:
    """An aiohttp client session that trusts our CA (when named) and verifies every certificate."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context()), **kw)


def urlopen(req, timeout: float):
    ctx = client_context()
    return urllib.request.urlopen(req, timeout=timeout, context=ctx if isinstance(ctx, ssl.SSLContext) else None)


def scheme(tls: bool, ws: bool = False) -> str:
    return ("wss" if tls else "ws") if ws else ("https" if tls else "http")


def make_ca_and_cert(directory: Path, hosts: list[str]) -> dict[str, Path]:
    """A private CA and one server certificate for `hosts` (names or IP addresses), for the demo
    and tests. Files: ca.pem, server.pem, server.key (0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "diemcau demo CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return paths
