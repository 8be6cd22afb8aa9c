"""scripts/seed_profiles.py writes a regenerated seeded profile as the next version, in the existing file's layout."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path

from devicefit.device_profiles._profile import PROFILES_DIR, load_profile_file

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "seed_profiles.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("seed_profiles_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_regenerated_profile_is_the_next_version_and_keeps_the_layout_of_what_did_not_change(tmp_path) -> None:
    script = _script()
    path = tmp_path / "sd865-cpu-4t.yaml"
    shutil.copy(PROFILES_DIR / "sd865-cpu-4t.yaml", path)
    old_text = path.read_text(encoding="utf-8")
    old = load_profile_file(path)
    assert "reach: {kind: none, serial: null, host: null}\n" in old_text  # the shipped layout
    predictor = dataclasses.replace(old.predictor, overhead_us=old.predictor.overhead_us + 12.5)
    # the recipe's profile says version 1, whatever the file was
    text = script.reseeded_text(dataclasses.replace(old, predictor=predictor, version=1), "new header\nline 2", path)
    assert text.startswith("# new header\n# line 2\nid: sd865-cpu-4t\n")
    assert "reach: {kind: none, serial: null, host: null}\n" in text and "benchmark_bin: null" not in text
    assert f"\nversion: {old.version + 1}\n" in text
    path.write_text(text, encoding="utf-8")
    new = load_profile_file(path)
    assert new.version == old.version + 1 and new.reach == old.reach and new.notes == old.notes
    assert new.predictor.overhead_us == predictor.overhead_us
    # the unchanged top-level fields are the old file's lines, byte for byte
    old_blocks, new_blocks = script._top_level_blocks(old_text), script._top_level_blocks(text)
    changed = {k for k in new_blocks if new_blocks[k] != old_blocks.get(k)}
    assert changed == {"version", "predictor"}


def test_a_new_seeded_profile_is_written_as_the_recipe_says(tmp_path) -> None:
    script = _script()
    old = load_profile_file(PROFILES_DIR / "sd865-cpu-4t.yaml")
    text = script.reseeded_text(dataclasses.replace(old, version=1), "h", tmp_path / "sd865-cpu-4t.yaml")
    assert "\nversion: 1\n" in text and "reach:\n  kind: none\n" in text  # no file to keep the layout of
