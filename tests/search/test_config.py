"""``-c fit.yaml``: strict schema errors that name file, line and key; flags on the command line win."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devicefit.device_profiles import SchemaError
from devicefit.search import cli
from devicefit.search._config import apply_config, explicit_options, load_config

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fit.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("trials: 4\nsamplr: tpe\n", 2, "unknown key 'samplr'"),
        ("example: digits-vit\ntrials: many\n", 2, "key 'trials' must be an integer, got 'many'"),
        ("seed: 1\n\ntrials: 0\n", 3, "key 'trials': trials expected a positive whole number, got 0"),
        ("time: soon\n", 1, "key 'time': time expected a duration such as 90s"),
        ("max_size: 2 parsecs\n", 1, "key 'max_size': max_size expected a size such as 2MB"),
        ("sampler: annealing\n", 1, "key 'sampler' must be one of 'nsga2', 'surrogate', 'tpe', 'gp', 'random'"),
        ("devices: host-x86\n", 1, "key 'devices' must be a list"),
        ("model: m.py:f\nexample: digits-vit\n", 1, "model and example cannot both be given"),
    ],
)
def test_schema_errors_name_the_file_the_line_and_the_key(tmp_path, text, line, message) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SchemaError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value)


def test_flags_given_on_the_command_line_win_even_at_their_default(tmp_path) -> None:
    path = _write(tmp_path, "trials: 20\nseed: 5\nepochs: 1\nsampler: tpe\nout: runs/here\ndata: d/data.npz\n"
                            "model: code/m.py:build\ndevices: [host-x86, profiles/arm.yaml]\nmax_size: 1MB\n")
    argv = ["fit", "-c", str(path), "--seed", "0", "--sampler", "nsga2"]
    args = cli.build_parser().parse_args(argv)
    explicit = explicit_options(cli.build_parser(), argv, "fit")
    assert explicit == {"config", "seed", "sampler"}
    merged = apply_config(args, load_config(path), tmp_path, explicit)
    assert (merged.trials, merged.seed, merged.epochs, merged.sampler) == (20, 0, 1, "nsga2")
    assert merged.out == tmp_path / "runs/here"  # relative to the config file's folder
    assert merged.data == str(tmp_path / "d/data.npz")
    assert merged.model == f"{tmp_path / 'code/m.py'}:build"
    assert merged.devices == ["host-x86", str(tmp_path / "profiles/arm.yaml")]
    assert merged.max_size == 1024**2 and merged.example is None


def test_a_command_line_example_replaces_the_files_model(tmp_path) -> None:
    path = _write(tmp_path, "model: m.py:build\ndata: d.npz\n")
    argv = ["search", "-c", str(path), "--example", "digits-vit"]
    merged = apply_config(cli.build_parser().parse_args(argv), load_config(path), tmp_path,
                          explicit_options(cli.build_parser(), argv, "search"))
    assert (merged.example, merged.model, merged.data) == ("digits-vit", None, None)


@pytest.mark.parametrize("verb", ["fit", "search"])
def test_a_bad_config_file_is_one_line_exit_2_and_writes_nothing(tmp_path, verb) -> None:
    path = _write(tmp_path, "example: digits-vit\ntrials: 3\nepoch: 2\n")
    out = tmp_path / "run"
    result = subprocess.run([*DEVICEFIT, verb, "-c", str(path), "--out", str(out)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"devicefit: error: {path}:3: unknown key 'epoch' (known keys here: " + lines[0].split("(known keys here: ")[1]]
    assert "epochs" in lines[0] and not out.exists()
    missing = subprocess.run([*DEVICEFIT, verb, "-c", str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 2 and missing.stderr.strip() == f"devicefit: error: -c {tmp_path / 'nope.yaml'}: no such file"


def test_space_bounds_come_from_the_file_then_the_flags_key_by_key(tmp_path) -> None:
    path = _write(tmp_path, "example: digits-vit\nspace: {min_depth: 2, precisions: [fp32, int8], max_fp32_layers: 1}\n")
    argv = ["fit", "-c", str(path), "--space", "precisions=fp32", "--space", "search-heads=false",
            "--space", "sparsities=0,0.5"]
    merged = apply_config(cli.build_parser().parse_args(argv), load_config(path), tmp_path,
                          explicit_options(cli.build_parser(), argv, "fit"))
    assert cli._space(merged) == {"min_depth": 2, "precisions": ["fp32"], "max_fp32_layers": 1,
                                  "search_heads": False, "sparsities": [0, 0.5]}


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("depth=3", "--space: unknown key 'depth'"),
        ("min_depth=two", "--space: key 'min_depth' must be an integer"),
        ("min_heads=0", "min_heads must be >= 1"),
        ("precisions=fp32,int4", "key 'precisions[1]' must be one of 'fp32', 'fp16', 'int8', got 'int4'"),
        ("min_depth", "--space min_depth: expected KEY=VALUE"),
    ],
)
def test_a_bad_space_flag_is_named(flag, message) -> None:
    args = cli.build_parser().parse_args(["fit", "--space", flag])
    with pytest.raises(cli.BadInput) as caught:
        cli._space(args)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_space_in_the_file_names_its_line(tmp_path) -> None:
    path = _write(tmp_path, "trials: 4\nspace:\n  min_depth: 0\n")
    with pytest.raises(SchemaError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:2: key 'space': space key 'min_depth': min_depth and min_heads must be >= 1"


def test_space_precisions_must_be_run_by_every_device(tmp_path) -> None:
    from devicefit.device_profiles import load_profile
    from devicefit.search._fit import FitSettings

    host = load_profile("host-x86")
    assert "int8" not in host.precisions  # the premise: Paddle Lite's x86 build has no int8 kernels
    with pytest.raises(ValueError, match="space precisions int8: not run by every target device"):
        FitSettings(out=tmp_path, devices=(host,), space={"precisions": ["fp32", "int8"]})
    settings = FitSettings(out=tmp_path, devices=(host,), space={"min_depth": 2, "sparsities": [0, 0.5]})
    bounds = settings.space_bounds()
    assert (bounds.min_depth, bounds.sparsities, bounds.precisions) == (2, (0, 0.5), ("fp32",))


def test_a_worker_rebuilds_the_space_from_the_run_spec(tmp_path) -> None:
    from devicefit.device_profiles import load_profile

    args = cli.build_parser().parse_args(["fit", "--space", "min_depth=2", "--out", str(tmp_path)])
    args.time_seconds = None
    spec = cli._run_spec(args, ["host-x86"], type("Source", (), {"to_spec": lambda self: {}})())
    assert spec["space"] == {"min_depth": 2}
    worker = cli.build_parser().parse_args(["worker", "--storage", "sqlite:///x.db", "--study", "s"])
    settings = cli._settings(cli._spec_args(spec, worker), [load_profile("host-x86")], [], 1)
    assert settings.space_bounds().min_depth == 2


def test_bounds_the_teacher_cannot_meet_are_one_line_exit_2_and_write_nothing(tmp_path) -> None:
    out = tmp_path / "run"
    result = subprocess.run([*DEVICEFIT, "fit", "--example", "digits-vit", "--space", "min_depth=9", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "devicefit: error: --space: min_depth 9 exceeds the teacher's 4 layers"
    assert not out.exists()
