"""The load harness: scenario validation, and the smoke rehearsal end to end (real processes)."""

import json
import os
import subprocess
import sys

import pytest

from loadtest.scenario import ScenarioError, load_scenario


def test_shipped_scenarios_load():
    assert load_scenario("smoke").participants == 16
    big = load_scenario("summit-1000")
    assert big.participants == 1000 and big.halls == 70 and {f.kind for f in big.fault} == {"kill-relay", "switch-source"}


@pytest.mark.parametrize("text,message", [
    ("name = 'x'\n", "halls"),
    ("name='x'\nhalls=0\nparticipants=1\nduration_s=5\n", "halls must be"),
    ("name='x'\nhalls=2\nparticipants=1\nduration_s=5\n[[fault]]\nat_s=1\nkind='meteor'\n", "fault kind"),
    ("name='x'\nhalls=2\nparticipants=1\nduration_s=5\n[[fault]]\nat_s=9\nkind='kill-relay'\n", "inside the run"),
    ("name = = 1", "not valid TOML"),
])
def test_bad_scenarios_are_refused_with_a_reason(tmp_path, text, message):
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(str(p))


def test_smoke_rehearsal_all_participants_receive_through_a_relay_kill(tmp_path):
    report = tmp_path / "s.json"
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    proc = subprocess.run([sys.executable, "-m", "diemcau", "loadtest", "smoke", "--report", str(report)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    r = json.loads(report.read_text())
    for key in ("participants", "participants_connected", "participants_receiving", "join_ms_p50", "join_ms_p99",
                "first_media_ms_p99", "delivered_ratio_min", "delivered_ratio_p50", "halls", "max_hall_freeze_ms",
                "faults", "cpu"):
        assert key in r, key
    assert r["participants_receiving"] == r["participants"] == 16
    assert r["delivered_ratio_p50"] >= 0.99
    (fault,) = r["faults"]
    assert fault["kind"] == "kill-relay" and fault["effect"]["participants_frozen"] >= 1
    assert fault["effect"]["participant_max_freeze_ms"] < 2000
    assert r["cpu"]["relays"] > 0 and r["cpu"]["halls"] > 0
