"""What gets timed: the zero-argument callable of each target and pass, built outside the timer.

Targets: the op (:func:`lrbench.local_relation` with one implementation), the
``LocalRelation2d`` layer, the 3x3 convolution it replaces (ResNet-50's spatial layer) and whole
networks (LR-Net-50 and ResNet-50; Hu et al., ICCV 2019, arXiv:1904.11491, Table 1), LR-Net-50
also as its floor (:mod:`lrbench.bench.measure.floor`). Inputs,
modules, gradients of the output and (for ``bwd``) the autograd graph are made here, once; the
callable only runs the pass and, on a GPU, waits for it (``torch.cuda.synchronize``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lrbench import registry
from lrbench.bench.matrix.cases import FLOOR, Case
from lrbench.bench.measure.floor import floor_network
from lrbench.bench.measure.formats import MEMORY_FORMATS, fastest_format
from lrbench.bench.peers import natten
from lrbench.inputs import Shape, make_inputs, to_layout
from lrbench.layer import LocalRelation2d
from lrbench.op import local_relation

NUM_CLASSES = 1000


@dataclass
class Prepared:
    """A timed callable and what a row needs to know about it.

    Attributes:
        fn: zero-argument callable running one pass (synchronised on CUDA).
        output_bytes: bytes of the forward output (the fused kernels' memory yardstick).
        memory_format: the memory format it runs in: the case's, or for networks the one that
            won the trial (:func:`lrbench.bench.measure.formats.fastest_format`).
    """

    fn: Callable[[], object]
    output_bytes: int
    memory_format: str = ""


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def _fwd(forward, leaves, device):
    sync = _sync(device)

    def run():
        with torch.no_grad():
            out = forward()
        sync()
        return out

    return run


def _fwd_bwd(forward, leaves, device):
    sync = _sync(device)
    with torch.no_grad():
        grad_out = torch.randn_like(forward())

    def run():
        grads = torch.autograd.grad(forward(), leaves, grad_out)
        sync()
        return grads

    return run


def _bwd(forward, leaves, device):
    sync = _sync(device)
    out = forward()  # the graph is built once, outside the timed region, and kept
    grad_out = torch.randn_like(out)

    def run():
        grads = torch.autograd.grad(out, leaves, grad_out, retain_graph=True)
        sync()
        return grads

    return run


PASS_BUILDERS = {"fwd": _fwd, "fwd_bwd": _fwd_bwd, "bwd": _bwd}


def _output_bytes(case: Case, channels: int) -> int:
    s = case.shape
    return s.B * channels * s.Ho * s.Wo * case.torch_dtype.itemsize


def build_op(case: Case) -> Prepared:
    """The op on fresh inputs in the case's memory format (channels_last: ``x``, ``query`` and
    ``key``, as a network's convolutions hand them over; the incoming gradient follows the
    output's format)."""
    s = case.shape
    inputs = make_inputs(s, dtype=case.torch_dtype, device=case.device).map(
        lambda t: to_layout(t, case.memory_format).requires_grad_(case.pass_ != "fwd"))
    x, query, key, prior = inputs

    def forward():
        return local_relation(x, query, key, prior, kernel_size=s.k, stride=s.stride,
                              impl=case.impl_label)  # (B, C, Ho, Wo); compiled: impl@mode

    fn = PASS_BUILDERS[case.pass_](forward, [x, query, key, prior], case.device)
    return Prepared(fn=fn, output_bytes=_output_bytes(case, s.C), memory_format=case.memory_format)


def _module_case(case: Case, module: nn.Module, out_channels: int) -> Prepared:
    """``module`` and its input ``(B, C, H, W)`` in the case's memory format."""
    s = case.shape
    fmt = MEMORY_FORMATS[case.memory_format]
    module = module.to(device=case.device, dtype=case.torch_dtype, memory_format=fmt)
    x = _images(case, s.C).contiguous(memory_format=fmt)  # (B, C, H, W)
    leaves = [x.requires_grad_(case.pass_ != "fwd"), *module.parameters()]
    fn = PASS_BUILDERS[case.pass_](lambda: module(x), leaves, case.device)
    return Prepared(fn=fn, output_bytes=_output_bytes(case, out_channels),
                    memory_format=case.memory_format)


def _images(case: Case, channels: int) -> torch.Tensor:
    """Standard-normal ``(B, channels, H, W)`` input, the same for every dtype and device."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn((case.B, channels, case.H, case.W), generator=gen, dtype=torch.float64)
    return images.to(device=case.device, dtype=case.torch_dtype)


def build_layer(case: Case) -> Prepared:
    s = case.shape
    layer = LocalRelation2d(s.C, kernel_size=s.k, stride=s.stride, m=s.m, impl=case.impl)
    return _module_case(case, layer, s.C)


def build_conv3x3(case: Case) -> Prepared:
    s = case.shape
    conv = nn.Conv2d(s.C, s.C, 3, stride=s.stride, padding=1, bias=False)
    return _module_case(case, conv, s.C)


def build_natten(case: Case) -> Prepared:
    forward, leaves = natten.forward_fn(case)
    fn = PASS_BUILDERS[case.pass_](forward, leaves, case.device)
    s = case.shape
    return Prepared(fn=fn, output_bytes=s.B * s.G * natten.HEAD_DIM * s.H * s.W
                    * case.torch_dtype.itemsize, memory_format=case.memory_format)


def load_models():
    """:mod:`lrbench.models`, or ``None`` when it is not there (it is imported lazily)."""
    try:
        return importlib.import_module("lrbench.models")
    except ImportError:
        return None


def build_network(case: Case) -> Prepared:
    """A whole network's forward or SGD training step, in the faster of the memory formats
    (tried briefly, here, outside the timed region; the same trial for both networks)."""
    name, fn = fastest_format(lambda fmt: _network_fn(case, fmt))
    return Prepared(fn=fn, output_bytes=case.B * NUM_CLASSES * case.torch_dtype.itemsize,
                    memory_format=name)


def network_model(case: Case) -> nn.Module:
    """The case's network: ResNet-50, LR-Net-50 with the case's implementation, or LR-Net-50's
    floor (:data:`FLOOR`: the op replaced by :func:`lrbench.bench.measure.floor.stand_in`)."""
    models = load_models()
    if case.target == "resnet50":
        return models.resnet50()
    if case.impl == FLOOR:
        return floor_network(getattr(models, case.target)())
    return getattr(models, case.target)(impl=case.impl)


def _network_fn(case: Case, memory_format: torch.memory_format) -> Callable[[], object]:
    model = network_model(case).to(device=case.device, dtype=case.torch_dtype)
    model = model.to(memory_format=memory_format)
    images = _images(case, 3).contiguous(memory_format=memory_format)  # (B, 3, H, W)
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, NUM_CLASSES, (case.B,), generator=gen).to(case.device)
    sync = _sync(case.device)
    if case.pass_ == "fwd":
        model.eval()
        return _fwd(lambda: model(images), [], case.device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        sync()
        return loss

    return train_step


BUILDERS: dict[str, Callable[[Case], Prepared]] = {
    "op": build_op,
    "layer": build_layer,
    "conv3x3": build_conv3x3,
    "natten": build_natten,
    "lrnet50": build_network,
    "resnet50": build_network,
}


def build(case: Case) -> Prepared:
    """The prepared callable of ``case`` (inputs, modules and graph made here, not when timed)."""
    return BUILDERS[case.target](case)


def why_not(case: Case) -> list[str]:
    """Reasons ``case`` cannot run on this machine (empty: it can)."""
    reasons = []
    if not registry.device_present(case.device):
        reasons.append(f"no {case.device} device on this machine")
    if case.target in ("lrnet50", "resnet50") and load_models() is None:
        reasons.append("lrbench.models not available")
    if case.target == "natten":
        reasons += [r for r in natten.why_not(case) if r not in reasons]
    if case.impl in registry.implementations():
        impl = registry.get(case.impl)
        backward = case.pass_ in BACKWARD_PASSES
        for spec in _op_specs(case):
            reasons += [r for r in impl.why_not(spec, backward=backward, compiled=case.compiled)
                        if r not in reasons]
    return reasons


BACKWARD_PASSES = ("bwd", "fwd_bwd", "train")  # the passes that differentiate the op


def _network_specs(case: Case) -> list:
    """LR-Net-50's op calls, as specs: the stem's 7x7 stride-2 layer and a stage's k x k."""
    stem = Shape(B=case.B, C=64, H=case.H, W=case.W, k=7, m=8, stride=2)  # after a 1x1 conv
    stage = Shape(B=case.B, C=100, H=case.H // 4, W=case.W // 4, k=7, m=8, stride=1)
    return [shape.spec(dtype=case.torch_dtype, device=case.device) for shape in (stem, stage)]


# target -> the op calls a case makes (their specs), for the registry's why-not.
OP_SPECS: dict[str, Callable[[Case], list]] = {
    "op": lambda case: [case.shape.spec(dtype=case.torch_dtype, device=case.device)],
    "layer": lambda case: [case.shape.spec(dtype=case.torch_dtype, device=case.device)],
    "lrnet50": _network_specs,
}


def _op_specs(case: Case) -> list:
    return OP_SPECS.get(case.target, lambda case: [])(case)
