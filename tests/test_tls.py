"""Transport security: the whole deployment on HTTPS/WSS with a private CA, and what TLS changes."""

import json
import os
import ssl
import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web

from diemcau import messages as m
from diemcau.tls import make_ca_and_cert, server_context
from tests.conftest import free_port


def test_demo_runs_on_tls_end_to_end(tmp_path):
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    report = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "diemcau", "demo", "--edges", "3", "--duration", "15", "--port", "0",
                           "--tls", "--report", str(report)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "console:  https://" in proc.stdout
    r = json.loads(report.read_text())
    assert r["halls_receiving"] == 3  # studio → origins → regionals → halls, every hop over HTTPS/WSS


def test_a_certificate_without_its_key_is_refused(tmp_path):
    files = make_ca_and_cert(tmp_path, ["127.0.0.1"])
    with pytest.raises(ValueError, match="both"):
        server_context(str(files["cert"]), "")
    with pytest.raises(ValueError, match="cannot load"):
        server_context(str(files["cert"]), str(files["ca"]))


async def test_orchestrator_on_tls_secure_cookie_wss_and_no_plain_http(tmp_path, start_orchestrator, monkeypatch):
    files = make_ca_and_cert(tmp_path / "tls", ["127.0.0.1"])
    orch = await start_orchestrator()
    port = free_port()
    site = web.TCPSite(orch.runner, "127.0.0.1", port, ssl_context=server_context(str(files["cert"]), str(files["key"])))
    await site.start()
    client_ctx = ssl.create_default_context(cafile=str(files["ca"]))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as http:
        async with http.post(f"https://127.0.0.1:{port}/api/v1/login",
                             json={"username": "admin", "password": orch.password}) as r:
            assert r.status == 200
            cookie = r.headers["Set-Cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        ws = await http.ws_connect(f"wss://127.0.0.1:{port}/api/v1/control",
                                   headers={"Authorization": f"Bearer {orch.credential('HN-01')}"})
        await ws.send_bytes(m.encode(m.Hello(node="HN-01", kind="hall", version="t")))
        assert isinstance(m.decode((await ws.receive()).data), m.Welcome)
        await ws.close()
    # a client that does not trust the CA is refused by its own verification
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"https://127.0.0.1:{port}/console/"):
                pass
        # plain HTTP to the TLS port gets no answer a browser would render
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{port}/console/") as r:
                assert r.status == 400
                raise aiohttp.ClientError("answered, but only with an error")
    await site.stop()
