"""Placement keeps a hall's two paths out of one failure domain: not one relay, not one origin."""

from orchestrator.placement import RelayView, choose_hall_relay, choose_upstream


def _views():
    return [
        RelayView("origin-1", "origin", "north", "http://o1", 60, lat=21.0, lon=105.8),
        RelayView("origin-2", "origin", "south", "http://o2", 60, lat=10.8, lon=106.7),
        RelayView("south-1", "regional", "south", "http://s1", 60, lat=10.8, lon=106.6),
        RelayView("south-2", "regional", "south", "http://s2", 60, lat=10.0, lon=105.8),
    ]


def test_the_relays_of_a_region_pull_from_different_origins():
    views = _views()
    s1, s2 = views[2], views[3]
    # alone, a southern relay takes the nearest origin
    assert choose_upstream(s1, views).id == "origin-2"
    # its sibling then takes the other one, though it is further away
    assert choose_upstream(s2, views, siblings={"origin-2": 1}).id == "origin-1"


def test_a_halls_standby_is_behind_another_origin_than_its_primary():
    views = _views()
    upstream_of = {"south-1": "origin-2", "south-2": "origin-2"}
    # both southern relays behind origin-2: nothing better than the region's other relay
    assert choose_hall_relay("south", 10.8, 106.6, views, {"south-1"}, upstream_of, "origin-2").id == "south-2"
    upstream_of = {"south-1": "origin-2", "south-2": "origin-1"}
    views[3].load = 30  # busier, yet behind the other origin: it is the standby
    views.append(RelayView("south-3", "regional", "south", "http://s3", 60, lat=10.8, lon=106.6))
    upstream_of["south-3"] = "origin-2"
    assert choose_hall_relay("south", 10.8, 106.6, views, {"south-1"}, upstream_of, "origin-2").id == "south-2"
    # with no origin to avoid, load and distance decide as before
    assert choose_hall_relay("south", 10.8, 106.6, views, {"south-1"}).id == "south-3"


def _three_tiers():
    return [
        RelayView("origin-1", "origin", "north", "http://o1", 500, lat=21.0, lon=105.8),
        RelayView("origin-2", "origin", "south", "http://o2", 500, lat=10.8, lon=106.7),
        RelayView("north-1", "regional", "north", "http://n1", 100, lat=21.0, lon=105.8),
        RelayView("north-2", "regional", "north", "http://n2", 100, lat=20.9, lon=106.0),
        RelayView("hn-1", "provincial", "north", "http://p1", 100, lat=21.0, lon=105.85, province="Hà Nội"),
        RelayView("hn-2", "provincial", "north", "http://p2", 100, lat=21.0, lon=105.8, province="Hà Nội"),
        RelayView("hp-1", "provincial", "north", "http://p3", 100, lat=20.8, lon=106.7, province="Hải Phòng"),
    ]


def test_a_third_tier_provincial_relays_pull_from_their_regions_relays_and_serve_their_province():
    views = _three_tiers()
    hn1, hn2 = views[4], views[5]
    # a provincial relay pulls from a regional relay of its region, not from an origin
    assert choose_upstream(hn1, views).id in ("north-1", "north-2")
    # its sibling in the province goes behind the other regional relay: one failure, not both
    first = choose_upstream(hn1, views).id
    assert choose_upstream(hn2, views, siblings={first: 1}).id == ({"north-1", "north-2"} - {first}).pop()
    # with no regional relay left, it pulls from an origin
    assert choose_upstream(hn1, views, exclude={"north-1", "north-2"}).role == "origin"
    # a regional relay still pulls from an origin
    assert choose_upstream(views[2], views).role == "origin"
    # a hall of Hà Nội: its province's relay; its standby on the province's other relay, behind another
    # regional relay; then (that one gone) a regional relay of its region before another province's
    upstream_of = {"hn-1": "north-1", "hn-2": "north-2", "hp-1": "north-1"}
    assert choose_hall_relay("north", 21.0, 105.8, views, province="Hà Nội").province == "Hà Nội"
    assert choose_hall_relay("north", 21.0, 105.8, views, {"hn-1"}, upstream_of, "north-1", province="Hà Nội").id == "hn-2"
    assert choose_hall_relay("north", 21.0, 105.8, views, {"hn-1", "hn-2"}, upstream_of, "north-1",
                             province="Hà Nội").role == "regional"
    # a hall of a province without a relay of its own: a regional relay of its region
    assert choose_hall_relay("north", 21.3, 105.4, views, province="Vĩnh Phúc").role == "regional"
    # full provincial relays: the region's regional relays take the hall
    hn1.load = hn2.load = 100
    assert choose_hall_relay("north", 21.0, 105.8, views, province="Hà Nội").role == "regional"


async def test_the_orchestrators_own_stall_is_nobodys_silence():
    """Heartbeats wait unread while the orchestrator's loop stands still: that time is not counted
    against the relays (else a starved control plane re-plans a healthy deployment)."""
    import asyncio
    import time as _time

    from orchestrator.planner import LoopWatch

    watch = LoopWatch()
    task = asyncio.ensure_future(watch.run())
    await asyncio.sleep(0.25)
    _time.sleep(0.6)  # the loop stands still (a collector pause, a starved CPU)
    await asyncio.sleep(0.25)
    task.cancel()
    assert 0.45 < watch.stalled_within(5.0) < 1.0
    assert watch.stalled_within(0.0) == 0.0
