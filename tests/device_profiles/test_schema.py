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


PREDICTOR = """\
predictor:
  provenance:
    calibrated: true
    method: a test
    measured_on: nothing
    date: '2026-11-28'
    tool: none
  overhead_us: 2.0
  kernels:
    arm/fc/fp32:
      call_us: 1.5
      mflop_us: 20.0
      shape_factors: [[4.0, 6.0, 7.0, 1.2]]
"""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("mflop_us: 20.0", "mflops_us: 20.0"), "phone.yaml:22: unknown key 'predictor.kernels.arm/fc/fp32.mflops_us'"),
        (("call_us: 1.5", "call_us: fast"), "phone.yaml:21: key 'predictor.kernels.arm/fc/fp32.call_us' must be a number"),
        (("call_us: 1.5", "call_us: -1.5"), "phone.yaml:21: key 'predictor.kernels.arm/fc/fp32.call_us': call_us must be"),
        (("    calibrated: true\n", ""), "phone.yaml:13: missing required key 'predictor.provenance.calibrated'"),
        (("arm/fc/fp32:", "arm-fc:"), "phone.yaml:19: key 'predictor.kernels': kernels has a key 'arm-fc' that is not"),
        (("1.2]]", "0.0]]"), "phone.yaml:23: key 'predictor.kernels.arm/fc/fp32.shape_factors': shape_factors must"),
        (("  overhead_us: 2.0\n", "  overhead_us: [2]\n"), "phone.yaml:18: key 'predictor.overhead_us' must be a number"),
    ],
)
def test_bad_predictor_sections_name_file_line_and_key(change: tuple[str, str], expected: str) -> None:
    text = VALID + PREDICTOR.replace(*change)
    with pytest.raises(SchemaError) as caught:
        parse(text)
    assert str(caught.value).startswith(expected), str(caught.value)


def test_predictor_section_is_read_into_frozen_data() -> None:
    profile = parse(VALID + PREDICTOR)
    assert profile.predictor is not None and profile.calibrated
    cost = profile.predictor.kernels["arm/fc/fp32"]
    assert (cost.call_us, cost.mflop_us, cost.in_kib_us, cost.models) == (1.5, 20.0, 0.0, 0)
    assert cost.shape_factors == ((4.0, 6.0, 7.0, 1.2),)
    assert "calibrated" in profile.describe_predictor() and "error not measured" in profile.describe_predictor()
