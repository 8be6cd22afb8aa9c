"""Deployment export: one candidate of a run, as a folder ready to ship to devices.

``devicefit export <run> --candidate <key> [--device ID ...] --to <folder>`` writes::

    model.pdmodel, model.pdiparams   the Paddle inference model (what Paddle Inference / opt read)
    <device>.nb                      a Paddle Lite model per device: copied from the run, or converted now
                                     through the Lite worker when the run has none for that device
    sample_input_<i>.npy             one real input per model input (a validation sample), when the run kept it
    manifest.json                    the exact candidate, its metrics with units and sources, the versions of
                                     every tool, and the SHA-256 and size of every file
    deploy.py, deploy.cc, README.md  Paddle Lite snippets that load the .nb and run one input

Everything is written to a staging folder first and moved into place at the end: a failed export leaves
nothing behind.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from devicefit.search._final import FinalOutcome, final_outcomes
from devicefit.search._results import TrialView, latency_provenance, study_devices, test_accuracies, trial_views
from devicefit.search._runs import RunLocation, load_run_study, locate_run
from devicefit.spaces._candidate import Candidate
from devicefit.spaces._export import MODEL_FILE, PARAMS_FILE

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "devicefit-export/1"
#: Python distributions whose versions every manifest records (paddlelite comes from the Lite worker).
TOOL_DISTRIBUTIONS = ("devicefit", "paddlepaddle", "paddleslim", "optuna", "numpy")
#: Paddle Lite power modes as its C++ API names them.
POWER_MODES = {
    "high": "LITE_POWER_HIGH", "low": "LITE_POWER_LOW", "full": "LITE_POWER_FULL", "no_bind": "LITE_POWER_NO_BIND",
    "rand_high": "LITE_POWER_RAND_HIGH", "rand_low": "LITE_POWER_RAND_LOW",
}
#: Places that are CPUs or GPUs; any other name in a profile's places is an NNAdapter device.
PLAIN_PLACES = {"arm", "x86", "opencl", "host", "metal", "fpga", "xpu"}
CXX_TYPES = {"float32": "float", "int64": "int64_t", "int32": "int32_t", "float16": "uint16_t", "int8": "int8_t",
             "uint8": "uint8_t", "bool": "bool", "float64": "double"}


class ExportError(ValueError):
    """The export cannot be made as asked; the message says why (unknown candidate, missing files ...)."""


@dataclasses.dataclass(frozen=True)
class ExportedFile:
    """One file of an export.

    Attributes:
        name: File name inside the export folder.
        sha256: Its content hash.
        size_bytes: Its size.
        origin: Where it comes from (copied from the run, converted now ...).
    """

    name: str
    sha256: str
    size_bytes: int
    origin: str


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_candidate` wrote.

    Attributes:
        folder: The export folder.
        key: The candidate's key.
        trial: The trial that evaluated it.
        files: Every file but ``manifest.json``.
        converted: Devices whose ``.nb`` was converted during the export (the others were copied).
        manifest: The manifest's content.
    """

    folder: Path
    key: str
    trial: int
    files: tuple[ExportedFile, ...]
    converted: tuple[str, ...]
    manifest: Mapping[str, Any]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_candidate(views: Sequence[TrialView], wanted: str) -> TrialView:
    """The evaluated trial of candidate ``wanted``: its full key, or a prefix that only one key starts with.

    Raises:
        ExportError: No evaluated candidate matches, or several do (they are named).
    """
    evaluated = [view for view in views if view.evaluated]
    exact = [view for view in evaluated if view.key == wanted]
    if exact:
        return exact[0]
    matches = [view for view in evaluated if view.key and view.key.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ExportError(f"--candidate {wanted} matches {len(matches)} candidates: "
                          f"{', '.join(str(v.key) for v in matches[:6])}{' ...' if len(matches) > 6 else ''}")
    examples = ", ".join(str(v.key) for v in evaluated[:3])
    raise ExportError(f"--candidate {wanted}: no evaluated candidate of the run has that key "
                      f"({len(evaluated)} evaluated{', e.g. ' + examples if examples else ''}; pareto.csv lists the front)")


def check_export_folder(folder: Path) -> None:
    """Fail, writing nothing, unless ``folder`` is new or empty and can be created.

    Raises:
        ExportError: It is a file, holds files, or its parent cannot be written.
    """
    if folder.exists():
        if not folder.is_dir():
            raise ExportError(f"--to {folder} exists and is not a folder")
        if any(folder.iterdir()):
            raise ExportError(f"--to {folder} is not empty; give a new or empty folder")
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise ExportError(f"--to {folder}: cannot write in {ancestor}")


def tool_versions(lite_hello: Any | None, lite_error: str | None = None) -> dict[str, Any]:
    """Versions of Python and every tool involved; Paddle Lite's as its worker reports it."""
    from importlib.metadata import PackageNotFoundError, version

    tools: dict[str, Any] = {"python": platform.python_version()}
    for name in TOOL_DISTRIBUTIONS:
        try:
            tools[name] = version(name)
        except PackageNotFoundError:
            tools[name] = None
    if lite_hello is not None:
        tools["paddlelite"] = {
            "version": lite_hello.paddlelite_version,
            "opt": lite_hello.opt_version,
            "python": lite_hello.python_version,
            "interpreter": lite_hello.executable,
        }
    else:
        tools["paddlelite"] = {"version": None, "error": lite_error or "not asked"}
    return tools


def _metrics(view: TrialView, devices: Sequence[str], test_accuracy: float | None,
             final: FinalOutcome | None = None) -> dict[str, Any]:
    record = view.record or {}
    retrained = final is not None and final.done
    accuracy = record["accuracy"]
    latencies: dict[str, Any] = {}
    for device in devices:
        latency = record["latencies"].get(device)
        if latency is None:
            latencies[device] = {"value": None, "unit": "ms", "source": "not evaluated in the run"}
            continue
        details = {k: v for k, v in latency.items() if k not in ("latency_ms", "source", "device_id")}
        latencies[device] = {"value": latency["latency_ms"], "unit": "ms", "source": latency_provenance(latency),
                             "details": details}
    first_device = next(iter(record["latencies"]), None)
    return {
        "accuracy": {"value": accuracy["accuracy"], "unit": "fraction", "split": accuracy["split"],
                     "fidelity": accuracy["fidelity"]},
        "test_accuracy": {"value": test_accuracy, "unit": "fraction", "split": "test",
                          "metric": final.metric if retrained else accuracy.get("metric", "accuracy"),  # type: ignore[union-attr]
                          "fidelity": final.fidelity if retrained else accuracy["fidelity"],  # type: ignore[union-attr]
                          "source": ("the exported model, re-trained by rung 3 (--final), on the held-out test split"
                                     if retrained else "the exported model on the held-out test split"
                                     if test_accuracy is not None else "not evaluated (the run did not export this candidate)")},
        "final": _final_metrics(final, devices),
        "latency": latencies,
        "size_bytes": {"value": record["size_bytes"], "unit": "bytes", "what": f"Paddle Lite .nb for {first_device}"},
        "parameters": {"value": record["parameters"], "unit": "count"},
    }


def _final_metrics(final: FinalOutcome | None, devices: Sequence[str]) -> dict[str, Any] | None:
    """Rung 3's figures (``--final``), with units and sources; None when it did not run for this candidate."""
    if final is None:
        return None
    if not final.done:
        return {"status": "failed", "error": final.error, "note": "the files and figures are the search's"}
    latencies = {}
    for device in devices:
        latency = final.latencies.get(device)
        latencies[device] = (
            {"value": None, "unit": "ms", "source": "not evaluated by rung 3"} if latency is None else
            {"value": latency["latency_ms"], "unit": "ms", "source": latency_provenance(latency),
             "details": {k: v for k, v in latency.items() if k not in ("latency_ms", "source", "device_id")}}
        )
    return {
        "status": "done",
        "fidelity": final.fidelity,
        "settings": dict(final.settings),
        "accuracy": {"value": final.val, "unit": "fraction", "metric": final.metric, "split": "val",
                     "fidelity": final.fidelity},
        "test_accuracy_before": {"value": final.search_test, "unit": "fraction", "metric": final.metric,
                                 "split": "test", "source": "the search's model, before rung 3"},
        "qat": None if final.qat is None else {**dict(final.qat), "unit": "fraction",
                                                "source": "QAT vs PTQ of the same fine-tuned student, Paddle dygraph simulation"},
        "latency": latencies,
        "size_bytes": {"value": final.size_bytes, "unit": "bytes", "what": "Paddle Lite .nb of the re-trained model"},
        "seconds": final.seconds,
    }


def _python_snippet(key: str, nb_files: Mapping[str, str], inputs: Sequence[Any]) -> str:
    devices = dict(nb_files)
    default = next(iter(devices))
    spec = [(i.name, list(i.concrete_shape()), i.dtype) for i in inputs]
    return f'''"""Run {key} once with Paddle Lite's Python API and print its output.

    python deploy.py [DEVICE]      DEVICE: {", ".join(devices)} (default: {default})

Needs Paddle Lite's Python package (pip install paddlelite==2.13rc0, CPython 3.7-3.10) and numpy. Its wheel runs
x86 .nb files on a PC; on a phone or an ARM board use deploy.cc with the Paddle Lite library built for it.
Input i is read from sample_input_<i>.npy when that file is here (a real validation sample), zeros otherwise.
"""

import sys
from pathlib import Path

import numpy as np
from paddlelite.lite import MobileConfig, create_paddle_predictor

HERE = Path(__file__).resolve().parent
NB_FILES = {json.dumps(devices)}
INPUTS = {json.dumps(spec)}  # name, shape (batch of one), dtype


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "{default}"
    if device not in NB_FILES:
        sys.exit(f"unknown device {{device!r}}: this export has {{', '.join(NB_FILES)}}")
    config = MobileConfig()
    config.set_model_from_file(str(HERE / NB_FILES[device]))
    predictor = create_paddle_predictor(config)
    for index, (name, shape, dtype) in enumerate(INPUTS):
        sample = HERE / f"sample_input_{{index}}.npy"
        array = np.load(sample) if sample.exists() else np.zeros(shape, dtype=dtype)
        predictor.get_input_by_name(name).from_numpy(np.ascontiguousarray(array.astype(dtype)))
    predictor.run()
    for index in range(len(predictor.get_output_names())):
        output = predictor.get_output(index).numpy()
        print(f"output {{index}}: shape {{list(output.shape)}} {{output.dtype}}")
        print("values:", " ".join(f"{{value:.6f}}" for value in output.reshape(-1)[:32]))
        if output.ndim == 2:
            print("top-1 class:", int(output[0].argmax()))


if __name__ == "__main__":
    main()
'''


def _cxx_snippet(key: str, profiles: Sequence[Any], inputs: Sequence[Any]) -> str:
    target = next((p for p in profiles if "x86" not in p.places.split(",")), profiles[0])
    nnadapter = [place for place in target.places.split(",") if place and place not in PLAIN_PLACES]
    device_line = ""
    if nnadapter:
        names = ", ".join(f'"{name}"' for name in nnadapter)
        device_line = f"  config.set_nnadapter_device_names({{{names}}});  // the accelerator of {target.id}\n"
    feeds = []
    for index, spec in enumerate(inputs):
        shape = spec.concrete_shape()
        count = 1
        for dim in shape:
            count *= dim
        ctype = CXX_TYPES.get(spec.dtype, "float")
        feeds.append(
            f"  {{  // input {index} '{spec.name}': {spec.dtype} {list(shape)}\n"
            f"    std::unique_ptr<Tensor> input(std::move(predictor->GetInput({index})));\n"
            f"    input->Resize({{{', '.join(str(d) for d in shape)}}});\n"
            f"    {ctype}* data = input->mutable_data<{ctype}>();\n"
            f"    for (int64_t i = 0; i < {count}; ++i) data[i] = 0;  // put the real input here\n"
            "  }\n"
        )
    return f"""// deploy.cc: run {key} once with Paddle Lite's C++ API (light API, .nb models) and print its output.
//
// Build it against the Paddle Lite inference library for the device (e.g. inference_lite_lib.android.armv8 or
// an armlinux build), for example:
//   $CXX -std=c++11 deploy.cc -I$LITE/cxx/include -L$LITE/cxx/lib -lpaddle_light_api_shared -o deploy
// then copy deploy and {target.id}.nb to the device and run:  ./deploy {target.id}.nb
// (threads and power mode below are those of the device profile {target.id}).
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include "paddle_api.h"

using namespace paddle::lite_api;  // NOLINT

int main(int argc, char** argv) {{
  const std::string model = argc > 1 ? argv[1] : "{target.id}.nb";
  MobileConfig config;
  config.set_model_from_file(model);
  config.set_threads({target.threads});
  config.set_power_mode({POWER_MODES.get(target.power_mode, "LITE_POWER_HIGH")});
{device_line}  std::shared_ptr<PaddlePredictor> predictor = CreatePaddlePredictor<MobileConfig>(config);
{''.join(feeds)}  predictor->Run();
  std::unique_ptr<const Tensor> output(std::move(predictor->GetOutput(0)));
  int64_t count = 1;
  for (int64_t dim : output->shape()) count *= dim;
  const float* values = output->data<float>();
  std::cout << "output 0: " << count << " values:";
  for (int64_t i = 0; i < count && i < 32; ++i) std::cout << " " << values[i];
  std::cout << std::endl;
  return 0;
}}
"""


def _readme(key: str, manifest: Mapping[str, Any], nb_files: Mapping[str, str]) -> str:
    accuracy = manifest["metrics"]["accuracy"]
    lines = [
        f"# {key}",
        "",
        f"Exported by devicefit from trial {manifest['candidate']['trial']} of study "
        f"'{manifest['candidate']['study']}'. Every figure, its unit and its source, the tools' versions and the",
        "files' SHA-256 are in manifest.json.",
        "",
        f"- validation accuracy {accuracy['value']:.4f} ({accuracy['split']} split, {accuracy['fidelity']})",
    ]
    test = manifest["metrics"]["test_accuracy"]
    final = manifest["metrics"].get("final")
    if final is not None and final["status"] == "done":
        lines.append(f"- re-trained after the search by rung 3 ({final['fidelity']}): validation accuracy "
                     f"{final['accuracy']['value']:.4f}; these files are the re-trained model")
    elif final is not None:
        lines.append(f"- rung 3 failed ({final['error']}): these files are the search's model")
    if test["value"] is not None:
        lines.append(f"- test accuracy {test['value']:.4f} (held-out test split, {test['fidelity']})")
    if final is not None and final["status"] == "done" and (final.get("qat") or {}).get("gain_test") is not None:
        lines.append(f"- QAT gain over PTQ on test: {final['qat']['gain_test']:+.4f}")
    retrained = final is not None and final["status"] == "done"
    latencies = final["latency"] if retrained else manifest["metrics"]["latency"]
    for device, latency in latencies.items():
        figure = "not evaluated" if latency["value"] is None else f"{latency['value']:.3f} ms, {latency['source']}"
        lines.append(f"- latency on {device}: {figure}" + (" (the re-trained model)" if retrained else ""))
    lines += [
        "",
        "Files: model.pdmodel/model.pdiparams (Paddle inference model); "
        + ", ".join(f"{name} ({device})" for device, name in nb_files.items()) + " (Paddle Lite).",
        "",
        "Run one input with Paddle Lite:",
        "",
        f"    python deploy.py {next(iter(nb_files))}        # Python API (pip install paddlelite; x86 .nb on a PC)",
        "    # deploy.cc: the same with the C++ API on a phone or an ARM board (build notes at its top)",
        "",
    ]
    return "\n".join(lines)


def export_candidate(
    target: str | Path,
    candidate: str,
    to: Path,
    *,
    devices: Sequence[str] | None = None,
    study_name: str | None = None,
    lite: Any | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export one evaluated candidate of a run for deployment (see the module docstring for the files).

    Args:
        target: The run's output folder or its storage URL.
        candidate: The candidate's key, or a prefix only one key starts with.
        to: The export folder (new or empty).
        devices: Device ids or profile paths to write a ``.nb`` for (default: the run's devices). A ``.nb``
            the run does not have is converted through the Lite worker with the device's Paddle Lite places.
        study_name: The study, when the storage holds several.
        lite: A :class:`~devicefit.evaluators._lite_client.LiteWorker` to use (default: one started here).
        progress: Called with one line per step.

    Raises:
        RunNotFoundError: ``target`` is not a run.
        ExportError: Unknown candidate, unusable ``to``, unknown device, or the candidate's files are missing.
    """
    from devicefit.device_profiles import SchemaError, UnknownDeviceError, load_profile
    from devicefit.spaces._program import read_program_info

    say = progress or (lambda line: None)
    to = Path(to)
    check_export_folder(to)
    location: RunLocation = locate_run(target, study_name)
    study = load_run_study(location)
    views = trial_views(study)
    view = resolve_candidate(views, candidate)
    record = view.record or {}
    key = str(view.key)
    if location.out is None:
        raise ExportError(f"the files of the run {location.storage_url} are not on this machine (its output folder "
                          "is unknown here): run the export where the run's folder is, or give the folder")
    final = final_outcomes(study).get(key)
    retrained = final is not None and final.done and final.artifact_dir is not None
    # A member that rung 3 re-trained ships its re-trained files (what its test figure is of).
    folders = [location.out / str(final.artifact_dir)] if retrained else []  # type: ignore[union-attr]
    folders += [location.out / str(record.get("artifact_dir", "")), location.out / "models" / key]
    source = next((folder for folder in folders if (folder / MODEL_FILE).is_file() and (folder / PARAMS_FILE).is_file()),
                  None)
    if retrained and source != folders[0]:
        raise ExportError(f"the re-trained files of {key} (rung 3) are missing from {folders[0]}")
    if source is None:
        raise ExportError(f"the files of {key} are missing from {location.out} (looked in "
                          f"{record.get('artifact_dir')} and models/{key})")
    try:
        profiles = [load_profile(device) for device in (devices or study_devices(study, views))]
    except (UnknownDeviceError, SchemaError) as exc:
        raise ExportError(str(exc).strip("'\"")) from None
    ids = [profile.id for profile in profiles]
    if len(set(ids)) != len(ids):
        raise ExportError(f"a device is listed twice: {ids}")

    staging = to.with_name(f".{to.name}.export-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    owned = None
    try:
        origins: dict[str, str] = {}
        for name in (MODEL_FILE, PARAMS_FILE, *sorted(p.name for p in source.glob("sample_input_*.npy"))):
            shutil.copy2(source / name, staging / name)
            origins[name] = f"copied from the run ({source.relative_to(location.out)})"
        missing = [p for p in profiles if not (source / f"{p.id}.nb").is_file()]
        hello, lite_error = None, None
        if lite is None:
            from devicefit.evaluators._lite_client import LiteUnavailableError, LiteWorker

            owned = lite = LiteWorker()
            try:
                hello = lite.hello()
            except LiteUnavailableError as exc:
                if missing:
                    raise ExportError(f"cannot convert for {', '.join(p.id for p in missing)}: {exc}") from None
                lite_error = str(exc).splitlines()[0]
        else:
            hello = lite.hello()
        converted = []
        candidate = Candidate.from_dict(record["candidate"])
        enable_fp16 = candidate.precision == "fp16"
        quant_type = None if candidate.weight_only_bits is None else f"QUANT_INT{candidate.weight_only_bits}"
        for profile in profiles:
            nb_name = f"{profile.id}.nb"
            if profile not in missing:
                shutil.copy2(source / nb_name, staging / nb_name)
                when = "by rung 3 (--final)" if retrained else f"during trial {view.number}"
                origins[nb_name] = f"copied from the run (converted for places {profile.places} {when})"
                continue
            say(f"converting {key} for {profile.id} (Paddle Lite places {profile.places}) ...")
            # The options the run converted with (MeasuredLatency.convert), from the candidate the run recorded.
            result = lite.convert(staging / MODEL_FILE, staging / PARAMS_FILE, profile.places, staging / profile.id,
                                  enable_fp16=enable_fp16, quant_type=quant_type)
            if result.nb_file.resolve() != (staging / nb_name).resolve():
                shutil.move(str(result.nb_file), staging / nb_name)
            origins[nb_name] = (f"converted at export by Paddle Lite opt {hello.opt_version if hello else ''} for places "
                                f"{profile.places}" + (" with fp16 kernels" if enable_fp16 else "")
                                + (f" with {quant_type} weights" if quant_type else ""))
            converted.append(profile.id)

        info = read_program_info(staging / MODEL_FILE)
        nb_files = {profile.id: f"{profile.id}.nb" for profile in profiles}
        (staging / "deploy.py").write_text(_python_snippet(key, nb_files, info.inputs), encoding="utf-8")
        (staging / "deploy.cc").write_text(_cxx_snippet(key, profiles, info.inputs), encoding="utf-8")
        origins["deploy.py"] = origins["deploy.cc"] = "written by devicefit export"
        test_accuracy = test_accuracies(study, location.out).get(key)
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "candidate": {
                "key": key,
                "trial": view.number,
                "study": location.study_name,
                "spec": record.get("candidate"),
                "feasible": view.feasible,
                "constraints": dict(view.constraints),
            },
            "metrics": _metrics(view, ids, test_accuracy, final),
            "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in info.inputs],
            "outputs": list(info.outputs),
            "devices": {p.id: {"places": p.places, "unit": p.unit, "threads": p.threads, "power_mode": p.power_mode,
                               "profile_version": p.version, "nb": nb_files[p.id]} for p in profiles},
            "tools": tool_versions(hello, lite_error),
        }
        (staging / "README.md").write_text(_readme(key, manifest, nb_files), encoding="utf-8")
        origins["README.md"] = "written by devicefit export"
        files = tuple(
            ExportedFile(name, sha256_file(staging / name), (staging / name).stat().st_size, origins[name])
            for name in sorted(origins)
        )
        manifest["files"] = {f.name: {"sha256": f.sha256, "size_bytes": f.size_bytes, "origin": f.origin} for f in files}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if to.exists():
            to.rmdir()  # empty, checked above
        to.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, to)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if owned is not None:
            owned.close()
    say(f"exported {key} to {to} ({len(files)} files, {len(converted)} .nb converted now)")
    return ExportResult(to, key, view.number, files, tuple(converted), manifest)
