"""The deployment's shape: halls (connection points) and relays, loaded and validated from TOML."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import msgspec

REGIONS = ("north", "central", "south")
HALL_ID = re.compile(r"[A-Z]{2,3}-[0-9]{2,5}")  # HN-01; commune scale: HN-0001 (fullmatch: no "\n" after)
NODE_ID = re.compile(r"[a-z][a-z0-9-]{0,31}")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config file is wrong; the message names the file, the entry and the field."""


class Hall(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    name: str
    province: str
    region: str
    lat: float
    lon: float


class RelaySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    role: str  # origin | regional | provincial (pulls from a regional relay; its province's halls first)
    region: str
    capacity: int = 60
    lat: float = 0.0
    lon: float = 0.0
    host: str = ""  # empty: the deployment's host
    port: int = 0  # 0: chosen free at launch
    province: str = ""  # provincial relays: the province whose halls it serves (as the topology spells it)


class Deployment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    host: str = "127.0.0.1"
    ice_addresses: list[str] = []
    stream: str = "programme"
    # lower layers of the bitrate ladder, highest first ("NAME:WIDTHxHEIGHT:KBPS"); the top is the
    # studio's own encoding. Transcoded at the origins only while some hall needs a layer.
    ladder: list[str] = []
    # the hosts profile: each part on a host of its own, a network namespace with an address in
    # this IPv4 subnet on a shared bridge (needs root); empty: every process on `host`
    network: str = ""
    hall_hosts: str = "region"  # hosts profile: the halls of a region share a host, or of a province


class Profile(msgspec.Struct, frozen=True):
    deployment: Deployment
    relays: list[RelaySpec]


class Topology(msgspec.Struct, frozen=True):
    halls: list[Hall]

    def by_id(self) -> dict[str, Hall]:
        return {h.id: h for h in self.halls}

    def provinces(self) -> set[str]:
        return {h.province for h in self.halls}


def _load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _convert(path: Path, what: str, raw: object, cls: type) -> object:
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {what}: {exc}") from None


def load_topology(path: Path | str | None = None) -> Topology:
    """Load and validate the hall topology (defaults to configs/topology.toml)."""
    path = Path(path) if path else CONFIG_DIR / "topology.toml"
    data = _load_toml(path)
    raw_halls = data.get("hall")
    if not isinstance(raw_halls, list) or not raw_halls:
        raise ConfigError(f"{path}: expected one or more [[hall]] tables")
    halls: list[Hall] = []
    seen_ids: set[str] = set()
    province_region: dict[str, str] = {}
    for i, raw in enumerate(raw_halls):
        label = f"hall #{i + 1} ({raw.get('id', '?') if isinstance(raw, dict) else '?'})"
        hall = _convert(path, label, raw, Hall)
        assert isinstance(hall, Hall)
        if not HALL_ID.fullmatch(hall.id):
            raise ConfigError(f"{path}: {label}: id must look like 'HN-01' (or 'HN-0001')")
        if hall.id in seen_ids:
            raise ConfigError(f"{path}: {label}: duplicate id {hall.id}")
        seen_ids.add(hall.id)
        if hall.region not in REGIONS:
            raise ConfigError(f"{path}: {label}: region must be one of {', '.join(REGIONS)}")
        if not (8.0 <= hall.lat <= 24.0 and 102.0 <= hall.lon <= 110.0):
            raise ConfigError(f"{path}: {label}: coordinates ({hall.lat}, {hall.lon}) are outside Vietnam")
        if not hall.name.strip() or not hall.province.strip():
            raise ConfigError(f"{path}: {label}: name and province must not be empty")
        prev = province_region.setdefault(hall.province, hall.region)
        if prev != hall.region:
            raise ConfigError(f"{path}: {label}: province {hall.province} is in {prev}, not {hall.region}")
        halls.append(hall)
    return Topology(halls=halls)


def load_profile(name_or_path: str | Path = "local") -> Profile:
    """Load a deployment profile by name (configs/profiles/NAME.toml) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / "profiles" / f"{name_or_path}.toml"
    data = _load_toml(path)
    if "deployment" not in data:
        raise ConfigError(f"{path}: missing [deployment] table")
    deployment = _convert(path, "[deployment]", data["deployment"], Deployment)
    relays: list[RelaySpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("relay", [])):
        spec = _convert(path, f"relay #{i + 1}", raw, RelaySpec)
        assert isinstance(spec, RelaySpec)
        if not NODE_ID.fullmatch(spec.id):
            raise ConfigError(f"{path}: relay {spec.id!r}: id must be lowercase letters, digits, '-'")
        if spec.id in seen:
            raise ConfigError(f"{path}: relay {spec.id}: duplicate id")
        seen.add(spec.id)
        if spec.role not in ("origin", "regional", "provincial"):
            raise ConfigError(f"{path}: relay {spec.id}: role must be 'origin', 'regional' or 'provincial'")
        if spec.role == "provincial" and not spec.province.strip():
            raise ConfigError(f"{path}: relay {spec.id}: a provincial relay names its province")
        if spec.region not in REGIONS:
            raise ConfigError(f"{path}: relay {spec.id}: region must be one of {', '.join(REGIONS)}")
        if spec.capacity <= 0:
            raise ConfigError(f"{path}: relay {spec.id}: capacity must be positive")
        relays.append(spec)
    if not any(r.role == "origin" for r in relays):
        raise ConfigError(f"{path}: the profile needs at least one relay with role = 'origin'")
    assert isinstance(deployment, Deployment)
    if deployment.hall_hosts not in ("region", "province"):
        raise ConfigError(f"{path}: [deployment] hall_hosts must be 'region' or 'province'")
    if deployment.network:
        import ipaddress

        try:
            net = ipaddress.ip_network(deployment.network)
        except ValueError as exc:
            raise ConfigError(f"{path}: [deployment] network: {exc}") from None
        if net.version != 4 or net.num_addresses < 64:
            raise ConfigError(f"{path}: [deployment] network: an IPv4 subnet of at least 64 addresses")
    from relay.ladder import parse_ladder

    try:
        parse_ladder(deployment.ladder)
    except ValueError as exc:
        raise ConfigError(f"{path}: [deployment] ladder: {exc}") from None
    return Profile(deployment=deployment, relays=relays)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))
