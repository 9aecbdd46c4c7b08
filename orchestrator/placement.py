"""Who receives from whom: region-, load- and distance-aware choice of relays (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

from diemcau.topology import haversine_km

STANDBY_WEIGHT = 0.5
REGION_CENTRES = {"north": (21.03, 105.85), "central": (16.05, 108.20), "south": (10.82, 106.63)}


# Relay tiers, top down: origins take the studio's feeds; regional relays pull from origins;
# provincial relays (optional, for commune scale) pull from the regional relays of their region.
TIERS = ("origin", "regional", "provincial")


@dataclass
class RelayView:
    id: str
    role: str  # origin | regional | provincial
    region: str
    url: str
    capacity: int
    load: int = 0  # nodes taking their media from this relay
    standby: int = 0  # nodes keeping a warm standby path on it
    lat: float = 0.0
    lon: float = 0.0
    alive: bool = True
    drained: bool = False  # an operator is emptying it: keeps what it has until moved, takes nothing new
    # cut from the control plane but still serving: its halls report receiving from it, so it keeps
    # them (moving healthy halls would be the outage); it takes nothing new until it is back
    cut: bool = False
    connected: bool = True  # its control channel is open (closed: dead, or cut, or reconnecting)
    province: str = ""  # a provincial relay's province (its halls' relay of choice)

    @property
    def placeable(self) -> bool:
        return self.alive and not self.drained and not self.cut and bool(self.url)

    @property
    def utilisation(self) -> float:
        # A standby costs little until it is woken, but a relay's standbys all wake at once when
        # a neighbour dies: weigh them so that they spread over relays.
        return (self.load + STANDBY_WEIGHT * self.standby) / self.capacity if self.capacity else 1.0

    def position(self) -> tuple[float, float]:
        if self.lat or self.lon:
            return self.lat, self.lon
        return REGION_CENTRES.get(self.region, REGION_CENTRES["north"])


def choose_hall_relay(
    region: str, lat: float, lon: float, relays: list[RelayView], exclude: set[str] = frozenset(),
    upstream_of: dict[str, str] | None = None, avoid_upstream: str = "", province: str = "",
) -> RelayView | None:
    """Best relay for a hall: its province's provincial relay first, then a regional relay of its
    region, then another province's relay in its region; least utilised, then nearest, within each.

    Falls back to relays of other regions (nearest first), then to an origin, so a hall
    is never left without a feed while any relay lives.
    """
    usable = [r for r in relays if r.placeable and r.id not in exclude and r.load < r.capacity]
    pool = [r for r in usable if r.role != "origin"] or [r for r in usable if r.role == "origin"]
    if not pool:
        return None

    upstream_of = upstream_of or {}

    def key(r: RelayView) -> tuple:
        if r.role == "provincial" and province and r.province == province:
            tier = 0
        elif r.region == region:
            tier = 1 if r.role != "provincial" else 2
        else:
            tier = 3
        # a standby behind the same upstream as the primary (or that upstream itself) fails with it:
        # another one first
        shared = bool(avoid_upstream) and avoid_upstream in (upstream_of.get(r.id), r.id)
        # Utilisation in coarse steps so that distance decides between similarly loaded relays.
        return (tier, shared, round(r.utilisation * 10), haversine_km(lat, lon, *r.position()), r.id)

    return min(pool, key=key)


def choose_upstream(relay: RelayView, relays: list[RelayView], exclude: set[str] = frozenset(),
                    siblings: dict[str, int] | None = None) -> RelayView | None:
    """What a relay pulls from. A regional relay: the origin that the fewest relays of its region pull
    from (so that two relays of a region are not behind the same origin), then least loaded, then
    nearest. A provincial relay: a regional relay of its region the same way (its siblings are the
    other relays of its province), then any regional relay, then an origin."""
    usable = [r for r in relays if r.placeable and r.id not in exclude and r.id != relay.id]
    if relay.role == "provincial":
        regional = [r for r in usable if r.role == "regional"]
        pool = [r for r in regional if r.region == relay.region] or regional or \
            [r for r in usable if r.role == "origin"]
    else:
        pool = [r for r in usable if r.role == "origin"]
    if not pool:
        return None
    siblings = siblings or {}
    return min(pool, key=lambda o: (siblings.get(o.id, 0), round(o.utilisation * 10),
                                    haversine_km(*relay.position(), *o.position()), o.id))
