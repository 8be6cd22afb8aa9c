"""NNAdapter places (NPUs, APUs, DSPs): which places are NNAdapter devices, and which ops Paddle Lite hands
to the accelerator.

When ``opt`` converts for an NNAdapter place (``huawei_kirin_npu,arm``, ``android_nnapi,arm`` ...) it prints
the subgraph partition on stdout (the Lite worker returns it as ``ConvertResult.log``)::

    subgraph clusters: 5
    digraph G {
       node_1345[label="elementwise_add_0_op_subgraph_0" shape="box" style="filled" ... fillcolor="red"]
       node_1396[label="layer_norm_0_op" shape="box" style="filled" color="black" fillcolor="white"]
       node_1406[label="encoder.layers.0.linear1.bias"]
       ...
    } // end G

Op nodes have ``shape="box"``; an op in subgraph ``k`` is labelled ``<type>_<index>_op_subgraph_<k>`` and runs
on the accelerator, an op labelled ``<type>_<index>_op`` stays on the CPU (``feed`` and ``fetch`` are not
compute ops). Seen with Paddle Lite 2.13rc0 (``android_nnapi`` leaves ``layer_norm`` on the CPU).
"""

from __future__ import annotations

import collections
import dataclasses
import re

#: Place names that ``opt`` (Paddle Lite 2.13, ``lite/api/tools/opt_base.cc``) treats as NNAdapter devices.
NNADAPTER_DEVICES = frozenset(
    {
        "amlogic_npu",
        "android_nnapi",
        "cambricon_mlu",
        "eeasytech_npu",
        "huawei_ascend_npu",
        "huawei_kirin_npu",
        "imagination_nna",
        "kunlunxin_xtcl",
        "mediatek_apu",
        "qualcomm_qnn",
        "rockchip_npu",
        "verisilicon_timvx",
    }
)

#: Ops of the graph that only move data in and out of the program.
_IO_OPS = frozenset({"feed", "fetch"})

_CLUSTERS = re.compile(r"^subgraph clusters:\s*(\d+)\s*$", re.MULTILINE)
_OP_NODE = re.compile(r'\[label="(?P<label>[^"]+)"[^\]]*shape="box"')
_OP_LABEL = re.compile(r"^(?P<type>.+)_(?P<index>\d+)_op(?:_subgraph_(?P<subgraph>\d+))?$")


def split_places(places: str) -> list[str]:
    """``"huawei_kirin_npu, arm"`` -> ``["huawei_kirin_npu", "arm"]``."""
    return [part.strip() for part in places.split(",") if part.strip()]


def nnadapter_devices(places: str) -> tuple[str, ...]:
    """The NNAdapter device names among ``places`` (empty for CPU and GPU places)."""
    return tuple(place for place in split_places(places) if place in NNADAPTER_DEVICES)


def benchmark_backend(places: str) -> tuple[str, str | None]:
    """The ``--backend`` and ``--nnadapter_device_names`` values of ``benchmark_bin`` for ``places``.

    ``arm`` -> (``arm``, None); ``opencl,arm`` -> (``opencl,arm``, None); ``huawei_kirin_npu,arm`` ->
    (``nnadapter,arm``, ``huawei_kirin_npu``): ``benchmark_bin`` names the NNAdapter backend ``nnadapter`` and
    takes the device names separately (``lite/api/tools/benchmark/benchmark.h``, ``SetBackendConfig``).
    """
    devices = nnadapter_devices(places)
    others = [place for place in split_places(places) if place not in NNADAPTER_DEVICES]
    if not devices:
        return ",".join(others), None
    return ",".join(["nnadapter", *others]), ",".join(devices)


@dataclasses.dataclass(frozen=True)
class OpPartition:
    """Where Paddle Lite runs each op of a model converted for an NNAdapter place.

    Attributes:
        subgraphs: Subgraphs handed to the accelerator.
        accelerator_ops: Op type -> number of ops of that type inside a subgraph (on the accelerator).
        cpu_ops: Op type -> number of ops of that type left outside (they fall back to the CPU).
    """

    subgraphs: int
    accelerator_ops: dict[str, int]
    cpu_ops: dict[str, int]

    @property
    def fully_offloaded(self) -> bool:
        """Every compute op runs on the accelerator."""
        return not self.cpu_ops


def parse_partition(log: str) -> OpPartition | None:
    """Read the subgraph partition from ``opt``'s output (the last one printed), or None if there is none."""
    clusters = list(_CLUSTERS.finditer(log))
    if not clusters:
        return None
    last = clusters[-1]
    start = log.find("digraph G {", last.end())
    end = log.find("} // end G", start)
    if start < 0 or end < 0:
        return None
    accelerator: collections.Counter[str] = collections.Counter()
    cpu: collections.Counter[str] = collections.Counter()
    for node in _OP_NODE.finditer(log, start, end):
        label = _OP_LABEL.match(node.group("label"))
        if label is None or label.group("type") in _IO_OPS:
            continue
        (cpu if label.group("subgraph") is None else accelerator)[label.group("type")] += 1
    return OpPartition(int(last.group(1)), dict(sorted(accelerator.items())), dict(sorted(cpu.items())))
