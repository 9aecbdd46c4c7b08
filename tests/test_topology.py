import pytest

from diemcau.topology import ConfigError, load_profile, load_topology


def test_real_topology_has_70_halls_in_59_provinces_across_three_regions():
    topo = load_topology()
    assert len(topo.halls) == 70
    assert len(topo.provinces()) == 59
    regions = {h.region for h in topo.halls}
    assert regions == {"north", "central", "south"}
    assert len({h.id for h in topo.halls}) == 70
    assert any("ộ" in h.name or "ờ" in h.name for h in topo.halls)  # names keep their diacritics
    multi = [p for p in topo.provinces() if sum(h.province == p for h in topo.halls) > 1]
    assert len(multi) >= 3


def test_local_profile_has_an_origin_and_two_regional_relays_per_region():
    prof = load_profile("local")
    assert sum(r.role == "origin" for r in prof.relays) >= 1
    for region in ("north", "central", "south"):
        assert sum(r.role == "regional" and r.region == region for r in prof.relays) == 2
    assert prof.deployment.ice_addresses == ["127.0.0.1"]


HALL = '[[hall]]\nid = "{id}"\nname = "Hội trường"\nprovince = "{prov}"\nregion = "{region}"\nlat = {lat}\nlon = 105.8\n'


@pytest.mark.parametrize(
    "text,message",
    [
        ("not toml = = =", "not valid TOML"),
        ("", "expected one or more"),
        (HALL.format(id="hn-1", prov="Hà Nội", region="north", lat=21.0), "id must look like"),
        (HALL.format(id="HN-01", prov="Hà Nội", region="west", lat=21.0), "region must be one of"),
        (HALL.format(id="HN-01", prov="Hà Nội", region="north", lat=51.0), "outside Vietnam"),
        (HALL.format(id="HN-01", prov="Hà Nội", region="north", lat=21.0) * 2, "duplicate id"),
        ('[[hall]]\nid = "HN-01"\n', "hall #1"),
        (HALL.format(id="HN-01", prov="Hà Nội", region="north", lat=21.0)
         + HALL.format(id="HN-02", prov="Hà Nội", region="south", lat=21.0), "is in north"),
        (HALL.format(id="HN-01", prov="Hà Nội", region="north", lat=21.0) + 'extra = 1\n', "hall #1"),
    ],
)
def test_bad_topology_files_fail_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_topology(path)


@pytest.mark.parametrize(
    "text,message",
    [
        ("[[relay]]\nid='a'\nrole='origin'\nregion='north'\n", "missing \\[deployment\\]"),
        ("[deployment]\nname='x'\n", "needs at least one relay with role = 'origin'"),
        ("[deployment]\nname='x'\n[[relay]]\nid='A B'\nrole='origin'\nregion='north'\n", "id must be"),
        ("[deployment]\nname='x'\n[[relay]]\nid='a'\nrole='edge'\nregion='north'\n", "role must be"),
        ("[deployment]\nname='x'\n[[relay]]\nid='a'\nrole='origin'\nregion='north'\ncapacity=0\n", "capacity"),
        ("[deployment]\nname='x'\n[[relay]]\nid='a'\nrole='origin'\nregion='north'\ncapacity='lots'\n", "relay #1"),
    ],
)
def test_bad_profiles_fail_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_profile(path)


def test_national_profile_has_three_tiers_and_its_provincial_relays_name_real_provinces():
    profile = load_profile("national")
    provinces = load_topology().provinces()
    by_role: dict[str, list] = {}
    for r in profile.relays:
        by_role.setdefault(r.role, []).append(r)
    assert set(by_role) == {"origin", "regional", "provincial"}
    assert all(r.province in provinces for r in by_role["provincial"])
    assert all(not r.province for r in by_role["origin"] + by_role["regional"])


def test_a_provincial_relay_without_its_province_is_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[deployment]\nname='x'\n[[relay]]\nid='o'\nrole='origin'\nregion='north'\n"
                    "[[relay]]\nid='p'\nrole='provincial'\nregion='north'\n")
    with pytest.raises(ConfigError, match="provincial relay names its province"):
        load_profile(path)
