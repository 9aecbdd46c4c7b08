"""`diemcau demo` as a newcomer runs it: every part its own process, a report, nothing left behind."""

import json
import os
import subprocess
import sys


def _diemcau_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "-- -m diemcau"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()} - {os.getpid()}


def test_demo_brings_halls_on_air_and_stops_cleanly(tmp_path):
    before = _diemcau_processes()
    report = tmp_path / "r.json"
    env = dict(os.environ)
    env.pop("REDIS_URL", None)  # the embedded Redis path
    proc = subprocess.run(
        [sys.executable, "-m", "diemcau", "demo", "--edges", "4", "--duration", "18", "--port", "0",
         "--report", str(report)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "console:" in proc.stdout and "login:" in proc.stdout
    r = json.loads(report.read_text())
    assert r["halls"] == 4 and r["halls_receiving"] == 4
    assert r["time_to_all_receiving_ms"] is not None
    for hall in r["per_hall"]:
        assert hall["frames_received"] >= 0.98 * hall["frames_expected"] > 0
        assert hall["latency_ms_p50"] >= 0 and hall["latency_ms_p95"] >= hall["latency_ms_p50"]
        assert hall["relay"]
    assert _diemcau_processes() - before == set()
