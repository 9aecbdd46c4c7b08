"""The fan-out benchmark runs end to end (studio, relay, subscribers, aiortc baseline) and measures."""

import json

import pytest

from relay.bench import main

FIELDS = (
    "subscribers", "seconds", "packets_in", "packets_forwarded", "us_per_packet", "relay_cpu_pct",
    "baseline_passthrough_us_per_packet", "baseline_mediarelay_cpu_pct", "baseline_mediarelay_collapse_n",
    "delivered_ratio", "latency_added_ms_p50", "latency_added_ms_p95", "passthrough_over_relay",
)


@pytest.mark.timeout(60)
def test_fanout_bench_measures_the_relay_and_the_aiortc_baseline(capsys):
    rc = main(["--subscribers", "3", "--seconds", "3", "--json", "--skip-mediarelay"])
    out = capsys.readouterr().out
    assert rc == 0, out
    r = json.loads(out)
    assert [f for f in FIELDS if f not in r] == []
    assert r["subscribers"] == 3
    # every packet that entered the relay in the window reached all three subscribers
    assert r["packets_in"] > 100
    assert r["delivered_ratio"] >= 0.99
    assert r["packets_forwarded"] >= 3 * r["packets_in"] * 0.99
    # a measured CPU cost, consistent with the CPU time and packet count it came from
    assert r["us_per_packet"] > 0
    assert r["us_per_packet"] == pytest.approx(r["relay_cpu_s"] / r["packets_forwarded"] * 1e6, rel=0.01)
    assert r["baseline_passthrough_us_per_packet"] > 0
    assert r["latency_samples"] > 0 and r["latency_added_ms_p50"] >= 0
    assert r["baseline_mediarelay_cpu_pct"] is None
