"""The access matrix, generated from the route tables so that a new route cannot be forgotten.

Orchestrator: every route × {no credential, garbage, expired session, a role below the one it
needs, cookie without the CSRF header}. Relay (and the hall's viewer server, which is the same
app): every WHIP/WHEP route × {no token, garbage, expired, another stream, another relay, the
wrong direction, another subject's session, the session after DELETE}. Control channel: no
credential, a forged one, a node that is not in the topology.
"""

import re

import aiohttp
import pytest

from orchestrator.api import ROUTES as ORCH_ROUTES
from orchestrator.auth import ROLES
from relay.client import recvonly_offer
from relay.server import ROUTES as RELAY_ROUTES
from tests.conftest import wait_for
from tests.media import start_studio

SAMPLE = {"hall": "HN-01", "relay": "north-1", "session": "abc123", "stream": "programme", "file": "app.js",
          "node": "HN-01"}


def fill(path: str, **over) -> str:
    values = {**SAMPLE, **over}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


OPERATOR_ROUTES = [r for r in ORCH_ROUTES if r[3] in ROLES]


async def _session(http, orch, user: str, role: str) -> str:
    await orch.state.accounts.set_user(user, f"{user}-password-1", role)
    async with http.post(orch.url + "/api/v1/login", json={"username": user, "password": f"{user}-password-1"}) as r:
        assert r.status == 200
        return (await r.json())["token"]


def test_every_route_is_classified():
    # a route must say who may call it; the matrix below covers each class
    assert {r[3] for r in ORCH_ROUTES} <= {"public", "participant", *ROLES}
    assert {r[3] for r in RELAY_ROUTES} <= {"public", "pub", "sub"}
    public = {(m, p) for m, p, _, who in ORCH_ROUTES if who == "public"}
    assert public == {("POST", "/api/v1/login"), ("GET", "/"), ("GET", "/console/"), ("GET", "/console/{file}")}


async def test_orchestrator_matrix(start_orchestrator):
    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        tokens = {role: await _session(http, orch, f"u-{role}", role) for role in ROLES}
        expired = await _session(http, orch, "u-gone", "admin")
        await orch.state.accounts.logout(expired)  # a session that has ended (expiry deletes it the same way)
        for method, path, name, need in OPERATOR_ROUTES:
            url = orch.url + fill(path)
            for label, headers, want in (
                ("no credential", {}, 401),
                ("garbage", {"Authorization": "Bearer dco1.garbage"}, 401),
                ("not bearer", {"Authorization": "Basic YWRtaW46YWRtaW4="}, 401),
                ("expired session", {"Authorization": f"Bearer {expired}"}, 401),
            ):
                async with http.request(method, url, headers=headers) as r:
                    assert r.status == want, f"{method} {path} with {label}: {r.status}"
                    assert (await r.json())["error"]
            for role in ROLES[: ROLES.index(need)]:
                async with http.request(method, url, headers={"Authorization": f"Bearer {tokens[role]}"}) as r:
                    assert r.status == 403, f"{method} {path} as {role}: {r.status}"
                    assert f"needs {need}" in (await r.json())["error"]
            if method not in ("GET", "HEAD"):
                jar_http = aiohttp.ClientSession(cookies={"dc_session": tokens["admin"]})
                async with jar_http:
                    async with jar_http.request(method, url) as r:
                        assert r.status == 403, f"{method} {path} by cookie without CSRF header: {r.status}"
                        assert "X-Diemcau-Request" in (await r.json())["error"]

        # the participant door: join tokens only, for the hall they name
        join = orch.url + "/api/v1/join"
        signer = orch.state.signer
        for label, token, want in (
            ("no credential", None, 401),
            ("operator session", tokens["admin"], 401),
            ("expired join token", signer.mint("p1", "join:HN-01", "sub", -5), 401),
            ("media token, not a join token", signer.mint("p1", "programme", "sub", 60), 401),
        ):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.post(join, headers=headers) as r:
                assert r.status == want, f"join with {label}: {r.status}"
        async with http.post(join, json={"hall": "HN-02"},
                             headers={"Authorization": f"Bearer {signer.mint('p1', 'join:HN-01', 'sub', 60)}"}) as r:
            assert r.status == 403  # a join token for another hall

        # the control channel (WebSocket): node credentials only, for nodes the topology knows
        control = orch.url + "/api/v1/control"
        for label, headers, want in (
            ("no credential", {}, 401),
            ("forged", {"Authorization": "Bearer dcn1.HN-01.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 401),
            ("operator session", {"Authorization": f"Bearer {tokens['admin']}"}, 401),
            ("unknown node", {"Authorization": f"Bearer {orch.credential('ZZ-99!')}"}, 403),
        ):
            async with http.get(control, headers=headers) as r:
                assert r.status == want, f"control channel with {label}: {r.status}"


async def test_relay_matrix(start_relay, signer):
    relay = await start_relay("north-1", "origin")
    studio, task = await start_studio(relay.url, signer)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: "programme" in relay.core.sources and relay.core.sources["programme"].live, 10)
            offer = await recvonly_offer()
            # a real subscriber session to aim DELETE and layer requests at
            owner = signer.mint("hall-a", "programme", "sub", 60, aud="north-1")
            async with http.post(relay.url + "/whep/programme", data=offer,
                                 headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {owner}"}) as r:
                assert r.status == 201, await r.text()
                session = r.headers["Location"].rsplit("/", 1)[-1]
            for method, path, name, need in RELAY_ROUTES:
                if need == "public":
                    continue
                url = relay.url + fill(path, session=session)
                body = {"data": offer, "headers": {"Content-Type": "application/sdp"}} if name.endswith("_post") else \
                    {"json": {"active": True}} if name == "whep_layer" else {}
                other_dir = "sub" if need == "pub" else "pub"
                cases = [
                    ("no token", None, 401),
                    ("garbage", "dcm1.garbage.garbage", 401),
                    ("expired", signer.mint("hall-a", "programme", need, -5, aud="north-1"), 401),
                    ("another stream", signer.mint("hall-a", "other", need, 60, aud="north-1"), 403),
                    ("another relay", signer.mint("hall-a", "programme", need, 60, aud="north-2"), 403),
                    ("wrong direction", signer.mint("hall-a", "programme", other_dir, 60, aud="north-1"), 403),
                ]
                if name in ("whep_delete", "whep_layer"):
                    cases.append(("another subject's session", signer.mint("hall-b", "programme", "sub", 60), 403))
                for label, token, want in cases:
                    headers = dict(body.get("headers", {}))
                    if token:
                        headers["Authorization"] = f"Bearer {token}"
                    kw = {k: v for k, v in body.items() if k != "headers"}
                    async with http.request(method, url, headers=headers, **kw) as r:
                        assert r.status == want, f"{method} {path} with {label}: {r.status} {await r.text()}"
            # the owner ends its session; its token then finds nothing to act on
            sess_url = f"{relay.url}/whep/programme/{session}"
            auth = {"Authorization": f"Bearer {owner}"}
            async with http.delete(sess_url, headers=auth) as r:
                assert r.status == 200
            async with http.delete(sess_url, headers=auth) as r:
                assert r.status == 404
            async with http.post(sess_url + "/layer", json={"active": True}, headers=auth) as r:
                assert r.status == 404
    finally:
        studio.stop()
        await task


async def test_relay_session_limits_per_token_and_per_address(start_relay, signer):
    relay = await start_relay("north-1", "origin", max_sessions_per_token=2, max_sessions_per_address=3)
    studio, task = await start_studio(relay.url, signer)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: "programme" in relay.core.sources and relay.core.sources["programme"].live, 10)
            # the studio's publish session counts against the address too: 1 of 3 used
            offer = await recvonly_offer()
            token = signer.mint("hall-a", "programme", "sub", 60)

            async def post(tok):
                async with http.post(relay.url + "/whep/programme", data=offer,
                                     headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {tok}"}) as r:
                    return r.status, r.headers.get("Retry-After"), await r.text()

            assert (await post(token))[0] == 201
            assert (await post(token))[0] == 201  # a reconnect overlapping the old session
            status, retry, text = await post(token)
            assert status == 429 and retry and "token already holds 2" in text
            status, retry, text = await post(signer.mint("hall-b", "programme", "sub", 60))
            assert status == 429 and retry and "127.0.0.1 already holds 3" in text
    finally:
        studio.stop()
        await task


async def _welcomed(http, orch, headers: dict):
    """HN-01's control channel opened with `headers`, its hello answered."""
    from diemcau import messages as m

    ws = await http.ws_connect(orch.control_url, headers=headers)
    await ws.send_bytes(m.encode(m.Hello(node="HN-01", kind="hall", version="t")))
    assert isinstance(m.decode((await ws.receive()).data), m.Welcome)
    return ws


async def _cut_off(http, orch, ws, headers: dict, why: str) -> None:
    """The open channel closes with 4403, and the same credential is refused (403, saying `why`)."""
    msg = await ws.receive(timeout=3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 4403
    async with http.get(orch.control_url.replace("ws", "http", 1), headers=headers) as r:
        assert r.status == 403 and why in (await r.json())["error"]


async def test_a_revoked_node_is_cut_off_and_cannot_come_back(start_orchestrator):

    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {await orch.token(http)}"}
        node = {"Authorization": f"Bearer {orch.credential('HN-01')}"}
        ws = await _welcomed(http, orch, node)
        url = orch.url + "/api/v1/nodes/HN-01/credential"
        async with http.post(url, json={"revoked": True, "reason": "laptop stolen"}, headers=admin) as r:
            assert r.status == 200, await r.text()
        await _cut_off(http, orch, ws, node, "revoked")
        evs = await orch.state.store.events(10, kind="credential_revoked")
        assert evs[0]["subject"] == "HN-01" and evs[0]["actor"] == "admin" and evs[0]["detail"] == "laptop stolen"
        async with http.post(url, json={"revoked": False}, headers=admin) as r:
            assert r.status == 200
        ws = await _welcomed(http, orch, node)
        await ws.close()
        async with http.post(orch.url + "/api/v1/nodes/ZZ-99/credential", json={}, headers=admin) as r:
            assert r.status == 404


async def test_a_reissued_credential_replaces_every_earlier_one(start_orchestrator):
    from diemcau.tokens import TokenError, verify_node_credential

    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {await orch.token(http)}"}
        old = {"Authorization": f"Bearer {orch.credential('HN-01')}"}
        ws = await _welcomed(http, orch, old)
        url = orch.url + "/api/v1/nodes/HN-01/credential/reissue"
        async with http.post(url) as r:
            assert r.status == 401
        async with http.post(url, headers=admin) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        assert body["generation"] == 1 and body["credential"].startswith("dcn1.HN-01.g1.")
        # the channel opened with the old credential closes; the old credential cannot come back
        await _cut_off(http, orch, ws, old, "replaced by generation 1")
        new = {"Authorization": f"Bearer {body['credential']}"}
        ws = await _welcomed(http, orch, new)
        await ws.close()
        # a forged generation (the MAC does not match) proves nothing
        forged = body["credential"].replace(".g1.", ".g2.")
        with pytest.raises(TokenError):
            verify_node_credential(orch.node_key, forged)
        evs = await orch.state.store.events(10, kind="credential_reissued")
        assert evs[0]["subject"] == "HN-01" and evs[0]["actor"] == "admin" and "credential" not in evs[0]["detail"]
