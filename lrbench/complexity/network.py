"""Closed-form parameters and multiply-adds of a whole network, layer by layer, from its config.

Unit: one multiply-add = 1 MAC (fvcore's convention). Walks a :class:`NetConfig` exactly as
:class:`lrbench.models.network.BottleneckNet` builds it, without building it, so the walk is an
independent description to check the traced model against. Layer names are the model's module
names (``layer1.0.conv2``); stages are the paper's (``conv1``, ``res2``..``res5``, ``fc``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lrbench.complexity.layer_terms import lr_layer_terms
from lrbench.layer import parameter_count as lr_parameter_count
from lrbench.models.config import STAGE_STRIDES, NetConfig
from lrbench.spec import output_size, weight_maps

STAGES = ("conv1", "res2", "res3", "res4", "res5", "fc")
STEM_MODULES = ("conv1", "bn1", "relu", "maxpool")  # torchvision's names for the stem's parts
MODULES_OF_STAGE = dict(zip(STAGES, (STEM_MODULES, ("layer1",), ("layer2",), ("layer3",),
                                     ("layer4",), ("fc",)), strict=True))

# The parts of the stems' ``conv1`` as steps (kind, arguments); "k" of an "lr" step comes from
# the config. A single step is the module ``conv1`` itself, several are ``conv1.0``, ``conv1.1``...
STEM_STEPS: dict[str, list[tuple[str, dict]]] = {
    "conv7": [("conv", {"c_out": 64, "k": 7, "stride": 2})],
    "lr7": [("conv", {"c_out": 64, "k": 1}), ("bn", {}), ("relu", {}), ("lr", {"stride": 2})],
    "deep": [("conv", {"c_out": 32, "k": 3, "stride": 2}), ("bn", {}), ("relu", {}),
             ("conv", {"c_out": 32, "k": 3}), ("bn", {}), ("relu", {}),
             ("conv", {"c_out": 64, "k": 3})],
}


@dataclass
class LayerCount:
    """One layer of the walk.

    Attributes:
        stage, name: paper stage and the model's module name.
        kind: ``conv``, ``lr``, ``fc``, ``bn``, ``relu``, ``maxpool``, ``add`` or ``avgpool``.
        macs: MACs by term (``{"conv": n}``, the LR terms for ``lr``, empty for zero-cost kinds).
        params: learnable parameters.
        elements: elements of the output (of the input for ``avgpool``), which the elementwise
            variants of :mod:`lrbench.complexity.gaps` count.
        info: the layer's shape parameters.
    """

    stage: str
    name: str
    kind: str
    macs: dict[str, int] = field(default_factory=dict)
    params: int = 0
    elements: int = 0
    info: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.macs.values())


class _Walker:
    """Follows the tensor ``(C, H, W)`` through the network, appending one record per layer."""

    def __init__(self, config: NetConfig, H: int, W: int) -> None:
        self.config, self.layers = config, []
        self.C, self.H, self.W = 3, H, W
        self.stage = "conv1"

    def _add(self, name: str, kind: str, **kw) -> None:
        self.layers.append(LayerCount(self.stage, name, kind, **kw))

    def conv(self, name: str, c_out: int, k: int, stride: int = 1) -> None:
        c_in, Ho, Wo = self.C, output_size(self.H, stride), output_size(self.W, stride)
        self._add(name, "conv", macs={"conv": c_in * c_out * k * k * Ho * Wo},
                  params=c_in * c_out * k * k, elements=c_out * Ho * Wo,
                  info={"C_in": c_in, "C_out": c_out, "k": k, "stride": stride, "H": self.H})
        self.C, self.H, self.W = c_out, Ho, Wo

    def lr(self, name: str, stride: int, k: int | None = None) -> None:
        C, m = self.C, self.config.m
        k = self.config.stem_kernel_size if k is None else k
        Ho, Wo = output_size(self.H, stride), output_size(self.W, stride)
        self._add(name, "lr", macs=lr_layer_terms(C, self.H, self.W, k, m, stride),
                  params=lr_parameter_count(C, k, m), elements=C * Ho * Wo,
                  info={"C": C, "H": self.H, "W": self.W, "k": k, "m": m, "stride": stride,
                        "G": weight_maps(C, m)})
        self.H, self.W = Ho, Wo

    def bn(self, name: str) -> None:
        self._add(name, "bn", params=2 * self.C, elements=self.C * self.H * self.W)

    def relu(self, name: str) -> None:
        self._add(name, "relu", elements=self.C * self.H * self.W)

    def add(self, name: str) -> None:
        self._add(name, "add", elements=self.C * self.H * self.W)

    def maxpool(self, name: str) -> None:
        self.H, self.W = output_size(self.H, 2), output_size(self.W, 2)
        self._add(name, "maxpool", elements=self.C * self.H * self.W)

    def block(self, name: str, mid: int, out: int, stride: int) -> None:
        cfg = self.config
        first = stride if cfg.stride_on == "first" else 1
        C, H, W = self.C, self.H, self.W
        if stride != 1 or out != C:
            self.conv(f"{name}.downsample.0", out, 1, stride)
            self.bn(f"{name}.downsample.1")
            self.C, self.H, self.W = C, H, W
        self.conv(f"{name}.conv1", mid, 1, first)
        self.bn(f"{name}.bn1")
        self.relu(f"{name}.relu")
        if cfg.spatial == "lr":
            self.lr(f"{name}.conv2", stride // first, cfg.kernel_size)
        else:
            self.conv(f"{name}.conv2", mid, cfg.kernel_size, stride // first)
        self.bn(f"{name}.bn2")
        self.relu(f"{name}.relu")
        self.conv(f"{name}.conv3", out, 1)
        self.bn(f"{name}.bn3")
        self.add(f"{name}.add")
        self.relu(f"{name}.relu")

    def walk(self) -> list[LayerCount]:
        cfg = self.config
        steps = STEM_STEPS[cfg.stem]
        for i, (kind, args) in enumerate(steps):
            getattr(self, kind)("conv1" if len(steps) == 1 else f"conv1.{i}", **args)
        self.bn("bn1")
        self.relu("relu")
        self.maxpool("maxpool")
        for s, (n, mid, out, stride) in enumerate(
            zip(cfg.blocks, cfg.widths, cfg.out_widths, STAGE_STRIDES, strict=True)
        ):
            self.stage = STAGES[s + 1]
            for j in range(n):
                self.block(f"layer{s + 1}.{j}", mid, out, stride if j == 0 else 1)
        self.stage = "fc"
        self._add("avgpool", "avgpool", elements=self.C * self.H * self.W)
        n = cfg.num_classes
        self._add("fc", "fc", macs={"fc": self.C * n}, params=self.C * n + n, elements=n)
        return self.layers


def network_layers(config: NetConfig, H: int = 224, W: int = 224) -> list[LayerCount]:
    """Every layer of ``config`` on a ``(1, 3, H, W)`` input, with its closed-form counts."""
    return _Walker(config, H, W).walk()


def network_macs(config: NetConfig, H: int = 224, W: int = 224) -> int:
    """MACs of conv, fc and LR layers (batch norm, ReLU, pooling and adds count zero)."""
    return sum(layer.total for layer in network_layers(config, H, W))


def network_params(config: NetConfig) -> int:
    """Closed-form learnable parameters (BN: scale and shift; fc: weight and bias)."""
    return sum(layer.params for layer in network_layers(config, 32, 32))
