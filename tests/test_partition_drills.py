"""The partition drills on the hosts profile: every part in its own network namespace, a link
between two hosts cut (packets dropped both ways, no reset), held, healed. Small versions of
`diemcau drill partition-* --profile hosts`: six halls, a 6 s cut."""

import json
import subprocess
import sys

import pytest

from diemcau import netns

pytestmark = pytest.mark.skipif(bool(netns.available()), reason=netns.available() or "")


def drill(kind: str, tmp_path, cut_s: int = 6) -> dict:
    report = tmp_path / f"{kind}.json"
    proc = subprocess.run([sys.executable, "-m", "diemcau", "drill", kind, "--profile", "hosts", "--edges", "6",
                           "--cut-seconds", str(cut_s), "--report", str(report)],
                          capture_output=True, text=True, timeout=400)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(report.read_text())
    summary = {k: v for k, v in r.items() if k not in ("per_hall", "terms", "during_cut")}
    print(kind, json.dumps(summary))
    for row in r["per_hall"]:
        print(" ", json.dumps(row), json.dumps(r.get("during_cut", {}).get(row["hall"])))
    return r


def test_the_leader_cut_from_redis_never_makes_two_leaders_and_media_never_notices(tmp_path):
    r = drill("partition-leader", tmp_path)
    # judged from each instance's own record of when it led, not only from polling
    assert r["leaders_at_once_max"] == 1 and r["leaders_at_once_sampled_max"] == 1
    assert r["stepped_down_ms"] is not None and r["new_leader_ms"] is not None
    assert r["stepped_down_ms"] < r["new_leader_ms"]
    assert r["converged"], r.get("not_converged_because")
    assert r["halls_recovered"] == r["halls"] == 6
    assert r["halls_receiving_during_cut"] == 6
    # the cut instance's nodes moved to the other one: nobody judged them dead, no hall moved
    assert r["frames_lost_total"] == 0
    assert r["instances_answering"] == 2


def test_halls_cut_from_their_relay_keep_receiving_and_come_back_whole(tmp_path):
    r = drill("partition-hall", tmp_path, cut_s=20)
    assert r["halls_cut"] >= 1
    # before the heal, each cut hall had a warm standby again, on a relay it can reach (its report
    # of the standby's silence re-plans it within seconds; failing that, 10 s of a standby that
    # does not come up: a 20 s cut leaves time for either and for the new standby to connect)
    for h in r["cut_halls"]:
        seen = r["during_cut"][h]
        assert seen["backup"] not in ("", r["relay"]) and seen["backup_state"] == "standby", (h, seen)
    assert r["halls_cut_receiving_during_cut"] == r["halls_cut"]
    assert r["halls_cut_moved"] == r["halls_cut"]  # on their standby, then re-planned
    assert r["converged"], r.get("not_converged_because")  # a warm standby again after the heal
    assert r["halls_recovered"] == r["halls"] == 6
    assert r["frames_lost_total"] == 0


def test_a_relay_cut_from_the_control_plane_keeps_its_halls_and_rejoins(tmp_path):
    r = drill("partition-relay", tmp_path)
    assert r["relay_halls"] >= 1
    assert r["relay_halls_kept"] == r["relay_halls"]
    assert r["relay_seen_cut"] and not r["relay_declared_dead"]
    assert r["converged"], r.get("not_converged_because")
    assert r["halls_recovered"] == r["halls"] == 6
    assert r["frames_lost_total"] == 0
