"""Regenerate the seeded (uncalibrated) device profiles shipped in device_profiles/profiles/.

A maintainer's tool, run by hand when the host calibration or the public figures change:

    .venv/bin/python scripts/seed_profiles.py --host-profile device_profiles/profiles/host-x86.yaml

It times the public figures' reference models (MobileNet V1/V2/V3, ResNet50: paddle.vision architectures
with random weights) on this host, converts them and a set of Transformer encoders for each device's Paddle
Lite places, fits each device's transfer from its public figures (device_profiles/_seed.py), and writes
<id>.yaml for every recipe below. The files say `calibrated: false` and cite every figure they use.
"""

from __future__ import annotations

import zlib  # noqa: F401  (before anything imports Paddle: see devicefit.spaces._paddle)

import argparse
import dataclasses
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from devicefit.device_profiles._calibrate import TimingProtocol, convert_for_device, time_round_robin, CalibrationModel
from devicefit.device_profiles._features import kernel_features
from devicefit.device_profiles._predictor import PredictorParams, SubgraphCost
from devicefit.device_profiles._probes import encoder_input_shapes, encoder_sweep, export_encoder, write_sample_inputs
from devicefit.device_profiles._profile import PROFILES_DIR, DeviceProfile, Reach, dump_profile, load_profile_file
from devicefit.device_profiles._seed import (
    PublicFigure,
    Transfer,
    fit_transfer,
    read_public_figures,
    retargeted_keys,
    seeded_predictor,
    select,
)
from devicefit.device_profiles._shapes import ShapedProgram, Tensor, infer_shapes
from devicefit.device_profiles._program import read_kernel_program
from devicefit.device_profiles._schema import parse_yaml
from devicefit.evaluators._host import HostRunner
from devicefit.evaluators._lite_client import LiteWorker

GiB = 1 << 30
REFERENCE_MODELS = ("MobileNetV1", "MobileNetV2", "MobileNetV3_large_x1_0", "MobileNetV3_small_x1_0", "ResNet50")


@dataclasses.dataclass(frozen=True)
class FigureQuery:
    """Which public figures fit one transfer."""

    soc: str
    backend: str
    precision: str
    threads: int = 1


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one seeded profile is made.

    Attributes:
        profile: The profile, without predictor.
        cpu: Figures of the SoC's ARM CPU, per precision (fp32 always; fp16/int8 when listed).
        accelerator: Figures of the accelerator (GPU or NNAdapter device), per precision.
        accelerator_unit: ``gpu`` (OpenCL kernels) or ``accelerator`` (ops inside NNAdapter subgraphs).
        cpu_scale: Extra factor on the CPU transfers (clock or thread-count analogies), with its reason.
        notes: Caveats written into the provenance.
    """

    profile: DeviceProfile
    cpu: dict[str, FigureQuery]
    accelerator: dict[str, FigureQuery] = dataclasses.field(default_factory=dict)
    accelerator_unit: str = ""
    cpu_scale: tuple[float, str] = (1.0, "")
    notes: str = ""


def _cpu(soc: str, threads: int = 1, precisions: Sequence[str] = ("fp32", "fp16", "int8")) -> dict[str, FigureQuery]:
    return {p: FigureQuery(soc, "arm", p, 1) for p in precisions}


def _phone(id_: str, name: str, soc: str, **kwargs) -> DeviceProfile:  # type: ignore[no-untyped-def]
    return DeviceProfile(id=id_, name=name, soc=soc, reach=Reach(kind="none"), version=1, **kwargs)


SNAPDRAGON_NOTE = ("Reached by 'none': nobody could measure it here. With the phone on adb, copy this file, set "
                   "reach to {kind: adb, serial: ..., benchmark_bin: ...} and run "
                   "`devicefit calibrate --device <file>`.")

RECIPES = [
    Recipe(_phone("sd865-cpu-1t", "Snapdragon 865 ARM CPU, 1 thread (Cortex-A77 big core)", "Snapdragon 865",
                  unit="cpu", places="arm", threads=1, precisions=("fp32", "fp16", "int8"),
                  memory_limit_bytes=8 * GiB, notes="Xiaomi MI10-class phone (8 GB RAM: the memory limit is the "
                  "phone's RAM, an upper bound). " + SNAPDRAGON_NOTE), _cpu("Snapdragon 865")),
    Recipe(_phone("sd865-cpu-4t", "Snapdragon 865 ARM CPU, 4 threads", "Snapdragon 865", unit="cpu", places="arm",
                  threads=4, precisions=("fp32", "fp16", "int8"), memory_limit_bytes=8 * GiB,
                  notes="Xiaomi MI10-class phone. " + SNAPDRAGON_NOTE), _cpu("Snapdragon 865"),
           cpu_scale=(0.0, "855-analogy")),
    Recipe(_phone("sd855-cpu-1t", "Snapdragon 855 ARM CPU, 1 thread (Cortex-A76 big core)", "Snapdragon 855",
                  unit="cpu", places="arm", threads=1, precisions=("fp32", "fp16", "int8"),
                  memory_limit_bytes=6 * GiB, notes="Xiaomi MI9-class phone (6 GB RAM). " + SNAPDRAGON_NOTE),
           _cpu("Snapdragon 855")),
    Recipe(_phone("sd855-cpu-4t", "Snapdragon 855 ARM CPU, 4 threads", "Snapdragon 855", unit="cpu", places="arm",
                  threads=4, precisions=("fp32", "fp16", "int8"), memory_limit_bytes=6 * GiB,
                  notes="Xiaomi MI9-class phone. " + SNAPDRAGON_NOTE), _cpu("Snapdragon 855"),
           cpu_scale=(0.0, "4-thread figures")),
    Recipe(_phone("sd845-cpu-1t", "Snapdragon 845 ARM CPU, 1 thread (Cortex-A75 big core)", "Snapdragon 845",
                  unit="cpu", places="arm", threads=1, precisions=("fp32", "fp16", "int8"),
                  memory_limit_bytes=6 * GiB, notes="Xiaomi MI8-class phone (6 GB RAM). " + SNAPDRAGON_NOTE),
           _cpu("Snapdragon 845")),
    Recipe(_phone("sd845-cpu-4t", "Snapdragon 845 ARM CPU, 4 threads", "Snapdragon 845", unit="cpu", places="arm",
                  threads=4, precisions=("fp32", "fp16", "int8"), memory_limit_bytes=6 * GiB,
                  notes="Xiaomi MI8-class phone. " + SNAPDRAGON_NOTE), _cpu("Snapdragon 845"),
           cpu_scale=(0.0, "4-thread figures")),
    Recipe(_phone("sd865-gpu-opencl", "Snapdragon 865 Adreno 650 GPU through OpenCL", "Snapdragon 865",
                  unit="gpu", places="opencl,arm", threads=1, precisions=("fp32", "fp16"),
                  memory_limit_bytes=8 * GiB,
                  notes="OpenCL image kernels compute in fp16 (Paddle Lite's default CL precision); ops without "
                  "OpenCL kernels run on the ARM CPU. " + SNAPDRAGON_NOTE),
           _cpu("Snapdragon 865", precisions=("fp32",)),
           accelerator={"fp32": FigureQuery("Snapdragon 865", "opencl", "fp16"),
                        "fp16": FigureQuery("Snapdragon 865", "opencl", "fp16")}, accelerator_unit="gpu"),
    Recipe(_phone("kirin990-npu", "Kirin 990 5G NPU (Da Vinci) through HiAI (huawei_kirin_npu)", "Kirin 990 5G",
                  unit="npu", places="huawei_kirin_npu,arm", threads=1, precisions=("fp32",),
                  memory_limit_bytes=8 * GiB,
                  notes="HUAWEI Mate30 5G / P40 Pro class; ops the NPU lacks run on the ARM CPU (Kirin 990 CPU "
                  "figures). One public NPU figure only: the cost of handing a subgraph to the NPU could not be "
                  "fitted and is 0, so small models are predicted optimistically fast. Reached by 'none': "
                  "nobody could measure it here."),
           {"fp32": FigureQuery("Kirin 990", "arm", "fp32")},
           accelerator={"fp32": FigureQuery("Kirin 990 5G", "huawei_kirin_npu", "fp32")},
           accelerator_unit="accelerator"),
    Recipe(_phone("sa8295p-qnn", "Qualcomm SA8295P Hexagon NPU through QNN (qualcomm_qnn)", "SA8295P",
                  unit="npu", places="qualcomm_qnn,arm", threads=1, precisions=("fp32", "int8"),
                  memory_limit_bytes=None,
                  notes="The one Qualcomm QNN device with public Paddle Lite figures (an automotive SoC); fp32 "
                  "models run in fp16 (QUALCOMM_QNN_ENABLE_FP16=true). CPU fallback ops use the Snapdragon 865 "
                  "CPU figures: no SA8295P CPU figure is public. One figure per precision: the subgraph hand-off "
                  "cost could not be fitted and is 0, so small models are predicted optimistically fast. "
                  "Reached by 'none'."),
           _cpu("Snapdragon 865", precisions=("fp32", "int8")),
           accelerator={"fp32": FigureQuery("SA8295P", "qualcomm_qnn", "fp16"),
                        "int8": FigureQuery("SA8295P", "qualcomm_qnn", "int8")}, accelerator_unit="accelerator"),
    Recipe(_phone("mt8168-apu", "MediaTek MT8168 APU through NNAdapter (mediatek_apu)", "MT8168", unit="npu",
                  places="mediatek_apu,arm", threads=1, precisions=("fp32", "int8"), memory_limit_bytes=2 * GiB,
                  notes="The APU runs quantized (int8) ops only: search int8 for it; fp32 ops would run on the "
                  "4x Cortex-A53 CPU, which this seed prices from the MT8168 CPU int8 figures (no fp32 CPU "
                  "figure is public). The per-subgraph cost is fitted on two single-subgraph CNN figures and "
                  "also holds per-inference overhead: with many subgraphs it dominates. Reached by 'none'."),
           {"fp32": FigureQuery("MT8168", "arm", "int8"), "int8": FigureQuery("MT8168", "arm", "int8")},
           accelerator={"int8": FigureQuery("MT8168", "mediatek_apu", "int8")}, accelerator_unit="accelerator"),
    Recipe(_phone("sd865-nnapi", "Snapdragon 865 through Android NNAPI (android_nnapi)", "Snapdragon 865",
                  unit="npu", places="android_nnapi,arm", threads=1, precisions=("fp32", "int8"),
                  memory_limit_bytes=8 * GiB,
                  notes="Android NNAPI picks the unit (DSP/GPU) itself; NNAPI has no gelu, layer_norm or matmul, "
                  "so Transformers split into many subgraphs with CPU ops between them. The per-subgraph cost is "
                  "fitted on two single-subgraph CNN figures, so it also holds NNAPI's per-inference overhead: "
                  "with dozens of subgraphs it dominates, and may overstate. Reached by 'none'."),
           _cpu("Snapdragon 865", precisions=("fp32", "int8")),
           accelerator={"fp32": FigureQuery("Snapdragon 865", "android_nnapi", "fp32"),
                        "int8": FigureQuery("Snapdragon 865", "android_nnapi", "int8")}, accelerator_unit="accelerator"),
    Recipe(DeviceProfile(id="rpi4-cpu", name="Raspberry Pi 4 (Cortex-A72 @1.5 GHz), ARM Linux, 1 thread",
                         soc="Broadcom BCM2711", unit="cpu", places="arm", reach=Reach(kind="none"), threads=1,
                         precisions=("fp32", "int8"), memory_limit_bytes=4 * GiB, version=1,
                         notes="4 GB board (the memory limit is its RAM). Cortex-A72 has no fp16 arithmetic. With "
                         "the board on the network, set reach to {kind: ssh, host: user@board} and calibrate."),
           _cpu("RK3399", precisions=("fp32", "int8")), cpu_scale=(1.8 / 1.5, "clock")),
]


def reference_layer(name: str):  # type: ignore[no-untyped-def]
    """The paddle.vision architecture of a public figure's model (random weights: latency does not need them).

    Two rewrites with the same function keep Paddle Lite 2.13rc0's opt alive: the classifier head flattens
    with ``reshape([0, -1])`` (opt segfaults on ``flatten`` after a pooling or convolution), and ``relu6``
    becomes ``clip(0, 6)`` (Paddle 2.6 writes ``relu6`` without the ``threshold`` attribute opt requires).
    """
    import paddle.vision.models as models
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    nn = paddle.nn

    class Clip6(nn.Layer):  # type: ignore[misc,name-defined]
        def forward(self, x):  # type: ignore[no-untyped-def]
            return paddle.clip(x, 0.0, 6.0)

    class Classifier(nn.Layer):  # type: ignore[misc,name-defined]
        def __init__(self, backbone, head) -> None:  # type: ignore[no-untyped-def]
            super().__init__()
            self.backbone = backbone
            self.head = head

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.head(self.backbone(x).reshape([0, -1]))

    builders = {
        "MobileNetV1": (models.mobilenet_v1, lambda: nn.Linear(1024, 1000)),
        "MobileNetV2": (models.mobilenet_v2, lambda: nn.Linear(1280, 1000)),
        "MobileNetV3_large_x1_0": (models.mobilenet_v3_large,
                                   lambda: nn.Sequential(nn.Linear(960, 1280), nn.Hardswish(), nn.Linear(1280, 1000))),
        "MobileNetV3_small_x1_0": (models.mobilenet_v3_small,
                                   lambda: nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Linear(1024, 1000))),
        "ResNet50": (models.resnet50, lambda: nn.Linear(2048, 1000)),
    }
    build, head = builders[name]
    backbone = build(pretrained=False, num_classes=-1)
    for parent in backbone.sublayers(include_self=True):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, child_name, Clip6())
    return Classifier(backbone, head())


def export_references(root: Path, seed: int) -> dict[str, object]:
    from devicefit.spaces._export import export_inference_model
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    artifacts = {}
    for name in REFERENCE_MODELS:
        paddle.seed(seed)
        layer = reference_layer(name)
        layer.eval()
        artifacts[name] = export_inference_model(
            layer, [paddle.static.InputSpec([1, 3, 224, 224], "float32", "image")], root / name / "model")
    return artifacts


def kernel_count(program: ShapedProgram, *, subgraphs: bool) -> int:
    """Launched kernels (feed/fetch and ops inside subgraphs left out), or the subgraph count."""
    if subgraphs:
        return len(program.subgraphs)
    return sum(1 for k in program.kernels if k.subgraph is None and k.type not in ("feed", "fetch"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-profile", type=Path, required=True, help="a calibrated host-x86 profile file")
    parser.add_argument("--work", type=Path, default=Path("runs/seed-profiles"))
    parser.add_argument("--out", type=Path, default=PROFILES_DIR, help="where <id>.yaml files go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    host_profile = load_profile_file(args.host_profile)
    if host_profile.predictor is None or not host_profile.calibrated:
        raise SystemExit(f"{args.host_profile} has no calibrated predictor")
    host = host_profile.predictor
    figures = read_public_figures()
    today = datetime.date.today().isoformat()

    with LiteWorker() as worker:
        hello = worker.hello()
        tool = f"scripts/seed_profiles.py, Paddle Lite {hello.paddlelite_version} ({hello.opt_version})"
        artifacts = export_references(args.work / "references", args.seed)
        reference_shapes = [((1, 3, 224, 224), "float32")]
        # 1. Time the reference models on this host, the way the host profile was calibrated.
        models = []
        for name, artifact in artifacts.items():
            directory = args.work / "references" / name
            inputs = write_sample_inputs(reference_shapes, directory, np.random.default_rng(args.seed))
            nb_file, program = convert_for_device(artifact, reference_shapes, host_profile, worker, directory)
            models.append(CalibrationModel(name, "model", nb_file, tuple(inputs), program))
        protocol = dataclasses.replace(TimingProtocol(clock="thread_cpu"), visits=5, visit_budget_ms=100.0, min_runs=3)
        host_ms, failed = time_round_robin(models, HostRunner(worker), host_profile, protocol, print)
        if failed:
            raise SystemExit(f"reference models failed on this host: {failed}")
        print("host latencies (ms):", {k: round(v, 2) for k, v in host_ms.items()})

        # 2. Transformer encoders whose kernel lists tell which kernels each device needs coefficients for.
        encoders = encoder_sweep(np.random.default_rng(args.seed + 7), 8, hidden=(64, 128))
        encoder_artifacts = [(spec, export_encoder(spec, args.work / "encoders" / spec.name / "model", args.seed))
                             for spec in encoders]
        from devicefit.examples.digits_vit.model import input_spec, load_teacher
        from devicefit.spaces._export import export_inference_model

        teacher = export_inference_model(load_teacher(), input_spec(), args.work / "encoders" / "digits-vit" / "model")

        for recipe in RECIPES:
            profile = recipe.profile
            print(f"== {profile.id} ({profile.places})", flush=True)
            directory = args.work / "devices" / profile.id

            def programs(enable_fp16: bool) -> tuple[dict[str, ShapedProgram], list[ShapedProgram]]:
                refs, encs = {}, []
                for name, artifact in artifacts.items():
                    refs[name] = convert(worker, artifact, reference_shapes, profile, directory / f"{name}-{enable_fp16}", enable_fp16)
                for spec, artifact in encoder_artifacts:
                    encs.append(convert(worker, artifact, encoder_input_shapes(spec), profile,
                                        directory / f"{spec.name}-{enable_fp16}", enable_fp16))
                encs.append(convert(worker, teacher, [((1, 1, 8, 8), "float32")], profile,
                                    directory / f"digits-vit-{enable_fp16}", enable_fp16))
                return refs, encs

            refs32, encoders32 = programs(False)
            # the fp32 CPU transfer's per-kernel cost is kept by the fp16 and int8 ones (see fit_transfer)
            fp32_query = recipe.cpu["fp32"]
            fp32_cpu = fit_transfer(select(figures, soc=fp32_query.soc, backend="arm", precision=fp32_query.precision),
                                    host_ms, {n: kernel_count(p, subgraphs=False) for n, p in refs32.items()})
            table: dict = {}
            transfers_used: dict[str, Transfer] = {}
            subgraph = None
            for precision in profile.precisions:
                fp16_arm = precision == "fp16" and profile.unit == "cpu"
                refs, encs = programs(True) if fp16_arm else (refs32, encoders32)
                transfers: dict[str, Transfer] = {}
                cpu_query = recipe.cpu.get(precision) or recipe.cpu["fp32"]
                cpu_figures = select(figures, soc=cpu_query.soc, backend="arm", precision=cpu_query.precision)
                counts = {n: kernel_count(p, subgraphs=False) for n, p in refs.items()}
                keep = None if cpu_query.precision == "fp32" else fp32_cpu.per_kernel_ms
                transfers["cpu"] = thread_and_clock(
                    recipe, fit_transfer(cpu_figures, host_ms, counts, per_kernel_ms=keep), figures, host_ms, counts
                )
                if recipe.accelerator_unit:
                    query = recipe.accelerator.get(precision)
                    if query is not None:
                        acc_figures = select(figures, soc=query.soc, backend=query.backend, precision=query.precision)
                        nnadapter = recipe.accelerator_unit == "accelerator"
                        acc_counts = {n: kernel_count(p, subgraphs=nnadapter) for n, p in refs.items()}
                        transfer = fit_transfer(acc_figures, host_ms, acc_counts, min_for_per_kernel=2 if nnadapter else 3)
                        if nnadapter:
                            subgraph = SubgraphCost(call_us=transfer.per_kernel_ms * 1000.0, kib_us=0.0)
                            transfer = dataclasses.replace(transfer, per_kernel_ms=0.0)
                        transfers[recipe.accelerator_unit] = transfer
                    else:
                        transfers[recipe.accelerator_unit] = transfers["cpu"]
                units = {"arm": "cpu", "host": "cpu", "opencl": "gpu", "nnadapter": "accelerator"}
                keys = {kernel_features(k).key for p in encs for k in p.kernels}
                targets = [("arm", "fp16" if fp16_arm else "fp32")]
                if recipe.accelerator_unit == "gpu":
                    targets.append(("opencl", "fp16"))
                elif recipe.accelerator_unit == "accelerator":
                    targets.append(("nnadapter", "any"))
                keys |= retargeted_keys(host.kernels, targets)
                if precision == "int8":
                    # No quantized program can be generated here: the int8 GEMM/conv kernels are the fp32 ones
                    # renamed (their precision code), priced with the int8 figures.
                    keys = {k.replace("/fp32", "/int8") for k in keys
                            if k.split("/")[1].split(".")[0] in ("fc", "matmul", "matmul_v2", "conv2d") and k.endswith("/fp32")}
                    part = seeded_for(keys, host, transfers, units, replace_from="/int8")
                else:
                    part = seeded_for(keys, host, transfers, units)
                for key, cost in part.items():
                    table.setdefault(key, cost)
                for unit, transfer in transfers.items():
                    transfers_used[f"{unit} {precision}"] = transfer
            if any(p.subgraphs for p in encoders32) and subgraph is None:
                subgraph = SubgraphCost(0.0, 0.0)
            predictor = seeded_predictor(
                kernels=table, host=host, transfers=transfers_used, subgraph=subgraph,
                method=("seeded from public figures: this host's calibrated kernel costs "
                        f"({args.host_profile.name}), re-keyed to the device's kernels, times a per-device scale "
                        "(and a per-kernel or per-subgraph cost) fitted on the device's published whole-model "
                        "latencies of CNNs also timed on this host"),
                date=today, tool=tool,
                notes=(f"{recipe.notes} CNN figures say little about Transformer kernels: read these predictions "
                       "as rough. int8 coefficients price fp32 GEMM/conv kernels at int8 speed (no quantized "
                       "program could be generated here); other int8 kernels are not covered. "
                       + (f"CPU transfer adjusted: {recipe.cpu_scale[1]}." if recipe.cpu_scale[1] else "")).strip(),
            )
            header = (f"{profile.name}: SEEDED FROM PUBLIC FIGURES, NOT CALIBRATED ON THE DEVICE.\n"
                      "Generated by scripts/seed_profiles.py (edit the script or reference/public_figures.csv, "
                      "not this file).\nEvery prediction made with it is labelled 'predicted (uncalibrated)'.")
            path = args.out / f"{profile.id}.yaml"
            text = reseeded_text(dataclasses.replace(profile, predictor=predictor), header, path)
            path.write_text(text, encoding="utf-8")
            load_profile_file(path)
            print(f"   wrote {path}: {len(table)} kernel keys; " + "; ".join(
                f"{u}: {t.describe()}" for u, t in transfers_used.items()), flush=True)
    return 0


def _top_level_blocks(text: str) -> dict[str, str]:
    """The YAML text of each top-level key of a profile file (its line and the indented ones after it)."""
    blocks: dict[str, str] = {}
    key = None
    for line in text.splitlines(keepends=True):
        if line.startswith("#"):
            continue
        if line[:1].strip() and ":" in line:
            key = line.split(":", 1)[0]
            blocks[key] = ""
        if key is not None:
            blocks[key] += line
    return blocks


def reseeded_text(profile: DeviceProfile, header: str, path: Path) -> str:
    """The file text of a regenerated seeded profile that replaces ``path`` (if it exists).

    Its version is the existing file's plus one (a regenerated profile is a new version: a run that recorded
    predictions of the old one can tell them apart), and every top-level field whose value did not change is
    written as the existing file has it (the seeded files keep, for example, ``reach`` on one line, as they
    were written before :class:`Reach` had more fields), so the diff shows what changed.
    """
    if not path.exists():
        return dump_profile(profile, header=header)
    old_text = path.read_text(encoding="utf-8")
    previous = load_profile_file(path)
    profile = dataclasses.replace(profile, version=previous.version + 1)
    new_blocks = _top_level_blocks(dump_profile(profile))
    old_blocks = _top_level_blocks(old_text)
    kept = {
        key: old_blocks[key] if key in old_blocks and getattr(previous, key) == getattr(profile, key) else block
        for key, block in new_blocks.items()
    }
    full = dump_profile(profile, header=header)
    comments = "".join(line for line in full.splitlines(keepends=True) if line.startswith("#"))
    result = comments + "".join(kept.values())
    source = str(path)
    if parse_yaml(result, DeviceProfile, source=source, what="device profile") != parse_yaml(
        full, DeviceProfile, source=source, what="device profile"
    ):
        raise AssertionError(f"{path}: the regenerated text does not read back to the regenerated profile")
    return result


def convert(worker: LiteWorker, artifact, shapes, profile: DeviceProfile, directory: Path, enable_fp16: bool) -> ShapedProgram:  # type: ignore[no-untyped-def]
    converted = worker.convert(artifact.model_file, artifact.params_file, profile.places, directory,
                               model_type="protobuf", enable_fp16=enable_fp16)
    return infer_shapes(read_kernel_program(converted.paths[0], converted.paths[1]), [Tensor(s, d) for s, d in shapes])


def seeded_for(keys, host: PredictorParams, transfers, units, replace_from: str = ""):  # type: ignore[no-untyped-def]
    from devicefit.device_profiles._seed import seeded_kernels

    lookup = {k: (k.replace(replace_from, "/fp32") if replace_from else k) for k in keys}
    table, missing = seeded_kernels(lookup.values(), host, transfers, units)
    if missing:
        raise SystemExit(f"no host equivalent for {missing}")
    return {key: table[source] for key, source in lookup.items()}


def thread_and_clock(recipe: Recipe, transfer: Transfer, figures: list[PublicFigure], host_ms, counts) -> Transfer:  # type: ignore[no-untyped-def]
    """Apply a recipe's CPU adjustment: a clock ratio, or the 1 -> 4 thread speed-up of the v2.6 figures."""
    factor, reason = recipe.cpu_scale
    if reason == "clock":
        note = f"times {factor:.3g} for the clock (RK3399's A72 runs at 1.8 GHz, this board's at 1.5 GHz)"
        return dataclasses.replace(transfer, scale=transfer.scale * factor,
                                   per_kernel_ms=transfer.per_kernel_ms * factor, adjustment=note)
    if reason in ("4-thread figures", "855-analogy"):
        soc = "Snapdragon 855" if reason == "855-analogy" else recipe.profile.soc
        one = fit_transfer(select(figures, soc=soc, backend="arm", precision="fp32", threads=1), host_ms, counts)
        four = fit_transfer(select(figures, soc=soc, backend="arm", precision="fp32", threads=4), host_ms, counts)
        ratio = four.scale / one.scale
        note = (f"times {ratio:.3g}, the 4-thread/1-thread ratio of {soc}'s Paddle Lite "
                f"{four.figures[0].paddle_lite_version} figures"
                + (" (no 4-thread figure of this SoC is public: by analogy with the Snapdragon 855)" if reason == "855-analogy" else ""))
        return dataclasses.replace(transfer, scale=transfer.scale * ratio, per_kernel_ms=transfer.per_kernel_ms,
                                   figures=transfer.figures + four.figures + one.figures, adjustment=note)
    return transfer


if __name__ == "__main__":
    sys.exit(main())
