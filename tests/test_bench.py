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


CONTROL_FIELDS = (
    "halls", "orchestrators", "heartbeats_per_s", "us_per_heartbeat", "lag_ms_p99", "kept_up", "replan_ms",
    "placed", "placed_s", "detect_ms", "affected", "replanned", "dark_halls", "channels_lost",
)


@pytest.mark.timeout(120)
def test_control_bench_places_every_hall_keeps_up_and_replans_a_dead_relay(tmp_path):
    """`diemcau bench control` at a CI size: 300 halls on two orchestrator processes and a real Redis."""
    import subprocess
    import sys

    report = tmp_path / "control.json"
    proc = subprocess.run([sys.executable, "-m", "diemcau", "bench", "control", "--halls", "300", "--seconds", "4",
                           "--report", str(report), "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=110)
    r = json.loads(report.read_text())

    def logs() -> str:  # what the orchestrators said about relays and re-plans: the first thing to read
        said = []
        for f in sorted((tmp_path / "w" / "logs").glob("orchestrator*.log")):
            said += [f"{f.stem}: {line}" for line in f.read_text(errors="replace").splitlines()
                     if "dead" in line or "leader" in line.lower() or "Traceback" in line or "Error" in line]
        return "\n".join(said[-40:])

    assert [f for f in CONTROL_FIELDS if f not in r] == [], r
    assert proc.returncode == 0 and r["kept_up"], (r, proc.stderr[-2000:])
    assert r["halls"] == r["placed"] == 300 and r["orchestrators"] == 2
    # every hall's heartbeats (2 a second) were read, and read soon
    assert r["heartbeats_per_s"] >= 0.95 * 300 * 2 and 0 < r["lag_ms_p99"] <= 250
    assert r["us_per_heartbeat"] > 0 and r["dark_halls"] == 0 and r["channels_lost"] == 0
    # the relay with the most halls died: the leader saw it and told every hall that depended on it
    assert r["affected"] > 0 and r["replanned"] == r["affected"], (r, logs())
    assert 0 < r["detect_ms"] <= 3000 and 0 <= r["replan_ms"] <= 3000, (r, logs())
