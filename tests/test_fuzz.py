"""Bad input, fuzzed: property-based tests of every parser, and `diemcau fuzz` at a CI-sized budget."""

import json

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diemcau import messages as m
from diemcau.fuzz import run
from diemcau.topology import ConfigError, load_profile, load_topology
from loadtest.scenario import ScenarioError, load_scenario
from relay.sdp import SdpError, check_offer

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"t": st.sampled_from(["hello", "hb", "media_lost", "welcome", "assign", "switch_source", "unassign", "error", "x"])},
    optional={"node": json_values, "kind": json_values, "seq": json_values, "hall": json_values, "relay": json_values,
              "upstream": json_values, "token": json_values, "epoch": json_values, "stream": json_values},
)


@FAST
@given(st.binary(max_size=400) | message_like.map(lambda d: json.dumps(d).encode()))
def test_control_messages_decode_or_raise_the_documented_error(data):
    try:
        msg = m.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    assert isinstance(msg, m.Msg)
    assert m.decode(m.encode(msg)) == msg  # what decodes, round-trips


SDP_LINES = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1", "m=video 9 UDP/TLS/RTP/SAVPF 96",
             "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=mid:1", "a=ice-ufrag:abcd",
             "a=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa", "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass",
             "a=rtpmap:96 VP8/90000", "a=rtpmap:111 opus/48000/2", "a=recvonly", "a=rtcp-mux", "m=video 0 X 1",
             "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", "a=ssrc:1 cname:x", "a=extmap:1 urn:x", "a=mid:0"]


@FAST
@given(st.lists(st.sampled_from(SDP_LINES) | st.text(max_size=30), max_size=40))
def test_sdp_offers_parse_or_get_a_reason(lines):
    text = "\r\n".join(lines) + "\r\n"
    try:
        check_offer(text)
    except SdpError as exc:
        assert str(exc)


@FAST
@given(st.binary(max_size=600) | st.text(max_size=600).map(str.encode))
def test_configs_and_scenarios_load_or_raise_the_documented_error(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("cfg")
    for name, loader, err in (("topology.toml", load_topology, ConfigError), ("profile.toml", load_profile, ConfigError),
                              ("scenario.toml", lambda p: load_scenario(str(p)), ScenarioError)):
        p = d / name
        p.write_bytes(data)
        with pytest.raises(err):
            loader(p)


@pytest.mark.timeout(120)
async def test_fuzz_every_door_at_a_ci_budget():
    r = await run(1500, seed=11)
    assert r["inputs_tried"] >= 1500
    assert set(r["per_target"]) == {"parsers", "http", "relay", "control", "udp"}
    assert all(n > 0 for n in r["per_target"].values())
    assert r["crashes"] == 0, r["crash_samples"]
    assert r["unexpected_5xx"] == 0, r["unexpected_5xx_samples"]
    assert r["leaks"] == 0, r["leak_detail"]
    assert all(r["intact"].values()), r["intact"]
