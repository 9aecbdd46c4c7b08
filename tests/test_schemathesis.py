"""schemathesis against the OpenAPI document the orchestrator serves: every operation, with auth.

A real orchestrator (real Redis) serves /api/v1/openapi.json; schemathesis loads it from the live
server and, for each operation, sends inputs that fit the document (positive) and inputs that do
not (negative), with an admin's Bearer token, and runs its checks on every answer: no server
error, the status code and content type are ones the document declares for the operation, the
body matches the declared schema, a negative input is refused with a 4xx, a request without the
credential gets 401. A 503 is allowed only where the document declares it and only with
Retry-After (the project's rule for "try again shortly", as in `diemcau fuzz`).

Half of the inputs of an operation with a path parameter name a hall, session, node or relay
that exists (an origin relay is registered, without media), so that the handlers behind the 404
are reached too. Two operations get their own credential: logout (each call ends a fresh session
of its own user, never the admin's that the run goes on with) and the participants' /join (a join
token, which is what it takes). Nothing is skipped. The budget is CI-sized
(DIEMCAU_SCHEMATHESIS_EXAMPLES per operation and mode, 25 by default: about 1 200 requests) and deterministic
(DIEMCAU_SCHEMATHESIS_RANDOM=1 explores with a fresh seed instead).

Afterwards, what was stored before the run must still be there and intact: every hall of the
topology is listed, a session nobody was pointed at is unchanged, the one that was edited is
still valid, the admin can still log in, the server still answers and none of its loops died.
"""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import wait_for

EXAMPLES = int(os.environ.get("DIEMCAU_SCHEMATHESIS_EXAMPLES", "25"))
RANDOM = os.environ.get("DIEMCAU_SCHEMATHESIS_RANDOM") == "1"

KEEP = {"id": "fuzz-keep", "title": "Kept as it is", "theme": "startups", "start": "2030-11-02T08:00:00+07:00",
        "end": "2030-11-02T09:00:00+07:00", "halls": ["north"]}
EDIT = {**KEEP, "id": "fuzz-edit", "title": "Edited by schemathesis", "start": "2030-11-03T08:00:00+07:00",
        "end": "2030-11-03T09:00:00+07:00"}
# path parameters that exist, so that half the inputs get past the 404
EXISTING = {"hall": "HN-01", "session": EDIT["id"], "node": "HN-01", "relay": "origin-1"}


@schemathesis.check
def retry_after_on_503(ctx, response, case):
    """A 503 says when to try again (Retry-After); any other 5xx is a failure of not_a_server_error."""
    if response.status_code == 503 and "retry-after" not in {k.lower() for k in response.headers}:
        raise AssertionError("503 without Retry-After")
    return None


# The console's preview posts an SDP offer: text
schemathesis.serializer.alias("application/sdp", "text/plain")

# schemathesis' defaults, and 413: a body over its route's byte limit is refused with 413, which
# every operation with a body declares; JSON Schema has no way to bound bytes, so 413 is a fit
# answer to any input. (5xx are judged by not_a_server_error and retry_after_on_503.)
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]


def _config():
    return schemathesis.Config.from_dict({
        "max-stream-events": 1,  # the board stream sends the board at once, then only on change
        "request-timeout": 10,
        "generation": {"with-security-parameters": False},  # the credential is the test's, below
        "checks": {
            # 503 only with Retry-After (retry_after_on_503) and where the operation declares it
            # (status_code_conformance); any other 5xx fails
            "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
            "negative_data_rejection": {"expected-statuses": REJECTED},
            "positive_data_acceptance": {"expected-statuses": ACCEPTED},
        },
        "operations": [
            # a session's end must be after its start and its halls must exist: rules between
            # fields and against the topology that the document cannot state, answered with 422
            *({"include-name": name, "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}}}
              for name in ("POST /api/v1/sessions", "PATCH /api/v1/sessions/{session}")),
            # an SDP offer's grammar is beyond JSON Schema: the relay parses it and answers 400
            # with its reason, which the preview passes on
            {"include-name": "POST /api/v1/preview",
             "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}}},
        ],
    })


def _run(base_url: str, headers_for, examples: int) -> tuple[list[str], int]:
    """Every operation of the served document, positive then negative; failures as text, calls made."""
    import requests

    schema = schemathesis.openapi.from_url(base_url + "/api/v1/openapi.json", config=_config(),
                                           headers=headers_for("GET /api/v1/openapi.json"))
    schema.config.update(base_url=base_url)
    failures: list[str] = []
    unnegatable: list[str] = []
    calls = 0
    http = requests.Session()
    for result in schema.get_all_operations():
        op = result.ok()
        path_names = [p.name for p in op.path_parameters]
        existing = {n: EXISTING[n] for n in path_names if n in EXISTING}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [op.as_strategy(generation_mode=mode)]
            if existing:
                strategies.append(op.as_strategy(generation_mode=mode, path_parameters=existing))

            @settings(max_examples=examples, deadline=None, database=None, derandomize=not RANDOM,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=st.one_of(strategies))
            def one(case):
                nonlocal calls
                calls += 1
                case.call_and_validate(base_url=base_url, session=http, headers=headers_for(op.label),
                                       additional_checks=[retry_after_on_503])

            try:
                one()
            except Unsatisfiable:
                # nothing of this operation can be made invalid (no parameters, no body, or only
                # an unconstrained string in the path): there is no negative input to send
                assert mode is GenerationMode.NEGATIVE, op.label
                unnegatable.append(op.label)
            except (Exception, BaseExceptionGroup) as exc:  # failed checks: go on, report them all
                failures.append(f"{op.label} [{mode.value}]: {type(exc).__name__}: {exc}")
    print(f"schemathesis: no negative input exists for {len(unnegatable)} operations: {', '.join(unnegatable)}")
    return failures, calls


@pytest.mark.timeout(120)
async def test_schemathesis_every_operation(start_orchestrator, start_relay):
    from relay.agent import RelayAgent

    orch = await start_orchestrator()
    # a live origin relay (no studio: no media to encode), so that drain, move, source and the
    # preview proxy have a relay to act on
    origin = await start_relay("origin-1", "origin", region="north", orchestrator_url=orch.control_url,
                               credential=orch.credential("origin-1"), heartbeat_ms=300)
    agent = RelayAgent(origin.core, origin.url)
    agent.start()
    try:
        await wait_for(lambda: _relay_alive(orch), 10, what="the origin relay registered")
        await _fuzz_and_check(orch)
    finally:
        await agent.stop()


async def _relay_alive(orch) -> bool:
    views, _ = await orch.state.planner.relay_views()
    return any(v.id == "origin-1" and v.alive for v in views)


async def _fuzz_and_check(orch) -> None:
    async with aiohttp.ClientSession() as http:
        admin = await orch.token(http)
        auth = {"Authorization": f"Bearer {admin}"}
        for body in (KEEP, EDIT):
            async with http.post(orch.url + "/api/v1/sessions", json=body, headers=auth) as r:
                assert r.status == 201, await r.text()
        async with http.get(orch.url + "/api/v1/halls", headers=auth) as r:
            halls_before = {h["id"] for h in (await r.json())["halls"]}
        async with http.get(orch.url + f"/api/v1/sessions/{KEEP['id']}", headers=auth) as r:
            keep_before = await r.json()
        # the participant door takes a join token, not an operator's session
        async with http.post(orch.url + "/api/v1/tokens/join", json={"hall": "HN-01", "participant": "fuzz"},
                             headers=auth) as r:
            join = (await r.json())["token"]
        await orch.state.accounts.set_user("fuzz-logout", "fuzz-logout-password", "viewer")

    loop = asyncio.get_running_loop()

    def headers_for(label: str) -> dict[str, str]:
        if label == "POST /api/v1/logout":
            # logout ends the session it is sent with: each call ends a fresh one of its own user,
            # never the admin session the rest of the run uses
            fut = asyncio.run_coroutine_threadsafe(orch.state.accounts.login("fuzz-logout", "fuzz-logout-password"),
                                                   loop)
            return {"Authorization": f"Bearer {fut.result(10)[0]}"}
        if label == "POST /api/v1/join":
            return {"Authorization": f"Bearer {join}"}
        return dict(auth)

    started = time.monotonic()
    failures, calls = await asyncio.to_thread(_run, orch.url, headers_for, EXAMPLES)
    took = time.monotonic() - started
    print(f"schemathesis: {calls} calls in {took:.1f} s")
    assert not failures, f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures)
    assert not [t.get_name() for t in orch.state.tasks if t.done()], "a loop of the orchestrator ended"

    async with aiohttp.ClientSession() as http:
        admin = await orch.token(http)  # the admin can still log in
        auth = {"Authorization": f"Bearer {admin}"}
        async with http.get(orch.url + "/api/v1/halls", headers=auth) as r:
            assert r.status == 200
            assert {h["id"] for h in (await r.json())["halls"]} == halls_before
        async with http.get(orch.url + f"/api/v1/sessions/{KEEP['id']}", headers=auth) as r:
            assert r.status == 200 and await r.json() == keep_before
        async with http.get(orch.url + f"/api/v1/sessions/{EDIT['id']}", headers=auth) as r:
            assert r.status == 200, await r.text()
        async with http.get(orch.url + "/api/v1/sessions", headers=auth) as r:
            assert r.status == 200 and {KEEP["id"], EDIT["id"]} <= {s["id"] for s in (await r.json())["sessions"]}
        for path in ("/api/v1/relays", "/api/v1/floor", "/api/v1/source", "/api/v1/events", "/metrics"):
            async with http.get(orch.url + path, headers=auth) as r:
                assert r.status == 200, f"{path}: {r.status} {await r.text()}"


async def test_what_schemathesis_found_is_answered_with_a_clear_4xx(start_orchestrator):
    """Each input here once got a 503, was stored, or was refused though the document allowed it."""
    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        h = {"Authorization": f"Bearer {await orch.token(http)}"}

        async def status(method: str, path: str, **kw) -> int:
            async with http.request(method, orch.url + path, headers=h, **kw) as r:
                if r.status >= 400:
                    assert (await r.json())["error"], path
                return r.status

        # JSON has one kind of number: 300.0 is the integer 300; 300.5 is still refused
        token = {"stream": "programme", "direction": "sub", "subject": "x"}
        assert await status("POST", "/api/v1/tokens/media", json={**token, "ttl_s": 300.0}) == 200
        assert await status("POST", "/api/v1/tokens/media", json={**token, "ttl_s": 300.5}) == 422
        assert await status("POST", "/api/v1/halls/HN-01/player", json={"ttl_s": 1e300}) == 422
        # an event id Redis cannot start after was a 503 "store unavailable"
        for after in ("18446744073709551615-18446744073709551615", "99999999999999999999-0", "1-1\n"):
            assert await status("GET", "/api/v1/events", params={"after": after}) == 400, after
        assert await status("GET", "/api/v1/events", params={"after": "9999999999999999999-0"}) == 200
        for query in ({"format": "xml"}, {"count": " 5"}, {"count": "1_000"}, {"count": "٥"}):
            assert await status("GET", "/api/v1/events", params=query) == 400, query
        # a trailing newline passed re.match(...$) and was stored
        session = {**KEEP, "id": "nl"}
        assert await status("POST", "/api/v1/sessions", json={**session, "id": "nl\n"}) == 422
        assert await status("POST", "/api/v1/sessions", json={**session, "stream": "programme\n"}) == 422
        # null was taken as "unchanged"; the document says a string
        assert await status("POST", "/api/v1/sessions", json=session) == 201
        assert await status("PATCH", "/api/v1/sessions/nl", json={"title": None, "theme": "startups"}) == 422
        # a reason of 200 characters, as the document allows, fits the body limit (sent as
        # \ud83d\ude00 each: 2 400 bytes)
        reason = "\U0001f600" * 200
        assert await status("POST", "/api/v1/nodes/HN-01/credential", json={"revoked": False, "reason": reason}) == 200
