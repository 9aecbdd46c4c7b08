"""The load harness: scenario validation, and the smoke rehearsal end to end (real processes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.scenario import ScenarioError, load_scenario


def test_shipped_scenarios_load():
    assert load_scenario("smoke").participants == 16
    # one per failover drill, and the link faults of the hosts profile
    scenarios = Path(__file__).parent.parent / "loadtest" / "scenarios"
    for kind in ("kill-relay", "kill-origin", "kill-source", "switch-source", "kill-redis",
                 "kill-orchestrator-leader", "drain-relay"):
        (fault,) = load_scenario(f"drill-{kind}").fault
        assert fault.kind == kind
    assert load_scenario("drill-kill-orchestrator-leader").orchestrators == 2
    assert {f.kind for f in load_scenario("links").fault} == {"cap", "loss", "cut"}
    assert sorted(p.stem for p in scenarios.glob("*.toml")) == sorted(
        ["smoke", "summit-1000", "floor", "links", "drill-cut-hall"] + [p.stem for p in scenarios.glob("drill-kill-*.toml")]
        + ["drill-switch-source", "drill-drain-relay"])
    big = load_scenario("summit-1000")
    assert big.participants == 1000 and big.halls == 70 and {f.kind for f in big.fault} == {"kill-relay", "switch-source"}


@pytest.mark.parametrize("text,message", [
    ("name = 'x'\n", "halls"),
    ("name='x'\nhalls=0\nparticipants=1\nduration_s=5\n", "halls must be"),
    ("name='x'\nhalls=2\nparticipants=1\nduration_s=5\n[[fault]]\nat_s=1\nkind='meteor'\n", "fault kind"),
    ("name='x'\nhalls=2\nparticipants=1\nduration_s=5\n[[fault]]\nat_s=9\nkind='kill-relay'\n", "inside the run"),
    ("name = = 1", "not valid TOML"),
    ("name='x'\nhalls=2\nparticipants=1\nduration_s=5\n[[fault]]\nat_s=1\nkind='cap'\nhost='halls-north'\n", "kbit"),
    ("name='x'\nhalls=2\nparticipants=1\nduration_s=5\n[[fault]]\nat_s=1\nkind='cut'\nhost='halls-north'\n", "peer"),
    ("name='x'\nhalls=2\nparticipants=1\nduration_s=5\n[[fault]]\nat_s=1\nkind='loss'\npct=5\n", "names its host"),
    ("name='x'\nhalls=2\nparticipants=1\nduration_s=5\n[[fault]]\nat_s=1\nkind='kill-orchestrator-leader'\n", "orchestrators = 2"),
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
    # churn: participants left and came back through the API, each with a new single-use token
    assert r["rejoins"] >= 3 and r["rejoins_failed"] == 0 and r["rejoin_ms_p99"] > 0
    (fault,) = r["faults"]
    assert fault["kind"] == "kill-relay" and fault["effect"]["participants_frozen"] >= 1
    assert fault["effect"]["participant_max_freeze_ms"] < 2000
    assert r["cpu"]["relays"] > 0 and r["cpu"]["halls"] > 0
    assert r["rss_mb"]["relays"] > 0 and r["rss_mb"]["halls"] > 0
    # what the machine carried, and at what cost per participant and per hall
    assert r["carried"] is True and r["machine_cores"] >= 1
    assert r["cpu_per_participant_pct"] > 0 and r["cpu_per_hall_pct"] > 0
    assert r["cores_for_1000_participants_70_halls"] > 0

    # the HTML report, as an operator opens it in a browser
    from playwright.sync_api import sync_playwright

    from tests.test_console import CHROMIUM, FLAGS

    page_path = report.with_suffix(".html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_path.as_uri())
            assert "smoke" in page.inner_text("h1")
            assert page.locator("#join-cdf polyline").count() == 1
            assert page.locator("#delivered rect[data-hall]").count() == r["halls"]
            assert page.locator("#freezes line.fault").count() == 1  # the relay kill, marked on the timeline
            assert page.locator("#freezes rect").count() >= fault["effect"]["participants_frozen"]
            assert page.locator("#participants tbody tr").count() == 16
            assert page.locator("#resources tbody tr").count() == len(r["cpu"])
            page.screenshot(path=str(Path(__file__).parent.parent / "docs" / "loadtest-report.png"), full_page=True)
        finally:
            browser.close()


LINKS = """
name = "links-small"
halls = 6
participants = 18
duration_s = 50
ramp_per_s = 12
workers = 2
fps = 15
width = 320
height = 180
[[fault]]
at_s = 10
kind = "cap"
host = "halls-north"
kbit = 900
duration_s = 12
[[fault]]
at_s = 25
kind = "loss"
host = "halls-north"
pct = 5
duration_s = 8
[[fault]]
at_s = 36
kind = "cut"
host = "halls-north"
peer = "relay-north-1"
duration_s = 8
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the hosts profile needs root (network namespaces)")
def test_link_faults_on_the_hosts_profile_capped_lossy_and_cut(tmp_path):
    """Every part, and each of two workers, on a host of its own; the halls' host capped (tc tbf),
    made lossy (nft), cut from its relay, each for a while: each fault applied and lifted, with
    what its halls and participants saw."""
    scenario = tmp_path / "links-small.toml"
    scenario.write_text(LINKS)
    report = tmp_path / "l.json"
    proc = subprocess.run([sys.executable, "-m", "diemcau", "loadtest", str(scenario), "--profile", "hosts",
                           "--report", str(report)], capture_output=True, text=True, timeout=300)
    print(proc.stdout[-4000:])
    r = json.loads(report.read_text())
    faults = {f["kind"]: f for f in r["faults"]}
    for kind, f in faults.items():
        print(kind, f["target"], json.dumps(f["effect"]))
    assert r["participants_connected"] == r["participants"] == 18
    assert set(faults) == {"cap", "loss", "cut"}
    for f in faults.values():
        assert f["halls"] and len(f["halls"]) == 6 and 7 <= f["lifted"] - f["time"] <= 14
        assert f["effect"]["participants_at_its_halls"] == 18
    # a cap of 900 kbit/s for six halls does not carry the top layer: the ladder steps some down
    assert any(len(v) > 1 or v != ["top"] for v in faults["cap"]["effect"]["layers_seen"].values())
    # workers ran on their own hosts: the participants' peers used those addresses
    assert all(p["connected"] for p in r["per_participant"])
