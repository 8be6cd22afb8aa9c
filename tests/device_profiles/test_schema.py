from __future__ import annotations

import pytest

from devicefit.device_profiles import DeviceProfile, SchemaError, list_profiles, load_profile, parse_yaml

VALID = """\
id: phone
name: A phone
soc: Snapdragon 865
unit: cpu
places: arm
threads: 4
precisions: [fp32, int8]
reach:
  kind: adb
  serial: abc123
"""


def parse(text: str) -> DeviceProfile:
    return parse_yaml(text, DeviceProfile, source="phone.yaml", what="device profile")


def test_valid_profile_is_built_with_defaults() -> None:
    profile = parse(VALID)
    assert profile.threads == 4
    assert profile.precisions == ("fp32", "int8")
    assert profile.reach.serial == "abc123"
    assert profile.power_mode == "high"
    assert profile.measurable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID + "threds: 2\n", "phone.yaml:11: unknown key 'threds'"),
        (VALID.replace("threads: 4", "threads: four"), "phone.yaml:6: key 'threads' must be an integer, got 'four'"),
        (VALID.replace("unit: cpu", "unit: tpu"), "phone.yaml:4: key 'unit' must be one of"),
        (VALID.replace("places: arm\n", ""), "phone.yaml:1: missing required key 'places'"),
        (VALID.replace("serial: abc123", "sreial: abc123"), "phone.yaml:10: unknown key 'reach.sreial'"),
        (VALID.replace("threads: 4", "threads: 0"), "phone.yaml:6: key 'threads': threads must be >= 1"),
        (VALID.replace("[fp32, int8]", "[fp32, int4]"), "phone.yaml:7: key 'precisions[1]' must be one of"),
        (VALID.replace("[fp32, int8]", "[int8]"), "phone.yaml:7: key 'precisions': precisions must include fp32"),
        ("id: [", "phone.yaml:1: not valid YAML"),
        ("", "phone.yaml:1: the device profile is empty"),
    ],
)
def test_bad_profiles_name_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse(text)
    assert str(caught.value).startswith(expected), str(caught.value)


def test_shipped_profiles_load_and_host_is_local() -> None:
    profiles = {p.id: p for p in list_profiles()}
    assert "host-x86" in profiles
    assert profiles["host-x86"].reach.kind == "local"
    assert profiles["host-x86"].places == "x86"


def test_unknown_device_lists_known_ids(tmp_path) -> None:
    with pytest.raises(LookupError, match="unknown device 'pixel'.*host-x86"):
        load_profile("pixel")
    path = tmp_path / "mine.yaml"
    path.write_text(VALID)
    assert load_profile(str(path)).id == "phone"
