"""Where a network's pass spends its time: per kind of module and per LR layer, forward and backward.

LR-Net and ResNet (Hu et al., ICCV 2019, arXiv:1904.11491, Table 1) run under ``torch.profiler``
(CPU activity). Every module's forward, and every local relation op call, runs inside a
``record_function`` scope named after its kind (:data:`KINDS`) and its LR layer. Each forward
operator is charged to its innermost scope; each backward node (the autograd engine's
``evaluate_function`` events) is charged to the scope of the forward operator that created it,
matched by the autograd sequence number. What no scope holds (the loss, gradient accumulation
into ``.grad``, the residual add's backward) is listed under ``other``.

What it measures: wall time on the calling thread of each top-level operator (the intra-op
threads' work is inside it), summed per kind; the median over ``rounds`` profiled passes. The
profiler adds a few microseconds per operator: the pass's time without it is measured too and
given beside the profiled total.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from lrbench.bench.matrix.cases import FLOOR  # --impl floor: the op replaced by a stand-in
from lrbench.bench.measure.floor import floor_network
from lrbench.layer import GeometricPrior, LocalRelation2d
from lrbench.models import NETWORKS, build
from lrbench.models.blocks import Bottleneck
from lrbench.models.stem import Stem
from lrbench.quiet import silenced_fds

SCOPE = "lrb|"  # record_function names: "lrb|<kind>|<LR layer or ''>"
BACKWARD = "autograd::engine::evaluate_function: "
OTHER = "other (outside modules)"
OP = "LR op"
NUM_CLASSES = 1000


def _conv_kind(name: str, module: nn.Conv2d) -> str:
    k = module.kernel_size[0]
    role = name.rsplit(".", 1)[-1]
    if role in ("key", "query"):
        return "LR key/query 1x1"
    if role == "final":
        return "LR final 1x1"
    stride = f" s{module.stride[0]}" if module.stride[0] != 1 else ""
    return f"conv {k}x{k}{stride}"


# Module type -> its kind (by name and module). A composite's kind is what it does itself,
# outside its children's scopes.
KINDS: dict[type, Callable[[str, nn.Module], str]] = {
    nn.Conv2d: _conv_kind,
    nn.BatchNorm2d: lambda name, mod: "batch norm",
    nn.ReLU: lambda name, mod: "relu",
    nn.MaxPool2d: lambda name, mod: "max pool",
    nn.AdaptiveAvgPool2d: lambda name, mod: "avg pool",
    nn.Linear: lambda name, mod: "fc",
    LocalRelation2d: lambda name, mod: "LR key/query 1x1",  # the fast path's one conv, glue
    GeometricPrior: lambda name, mod: "LR prior",
    Bottleneck: lambda name, mod: "residual add",
    Stem: lambda name, mod: "stem 1x1+BN+ReLU (folded)",
}


@dataclass(frozen=True)
class ProfileConfig:
    """What to profile.

    Attributes:
        network: a name of :data:`lrbench.models.NETWORKS`.
        train: forward, cross-entropy and backward (training mode) instead of an eval forward.
        impl: the LR layers' implementation (``None``: the fastest usable), or ``"floor"``.
        channels_last: model and images in channels_last.
        batch, size: images ``(batch, 3, size, size)``.
        rounds: profiled passes (the median is reported), after ``warmup`` plain ones.
        threads: intra-op threads (``None``: torch's current count).
    """

    network: str
    train: bool = False
    impl: str | None = None
    channels_last: bool = False
    batch: int = 8
    size: int = 224
    rounds: int = 3
    warmup: int = 1
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {list(NETWORKS)}, got {self.network!r}")
        if self.impl is not None and not self.network.startswith("lr"):
            raise ValueError(f"impl applies to LR-Net only, got impl={self.impl!r} for "
                             f"{self.network!r}")
        for name in ("batch", "size", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.train and self.batch < 2:
            raise ValueError("batch must be >= 2 with train (batch norm needs two values)")


@dataclass
class Profile:
    """Milliseconds per kind and per LR layer (medians over the rounds) and the totals.

    Attributes:
        kinds: ``{kind: {"fwd": ms, "bwd": ms}}``.
        layers: ``{LR layer name: {"op fwd", "op bwd", "layer fwd", "layer bwd": ms}}`` (the layer:
            projections, prior, op and final 1x1 together).
        profiled_ms: the pass's wall time under the profiler; plain_ms: without it.
        memory_format: ``channels_last`` or ``contiguous``.
    """

    config: ProfileConfig
    kinds: dict[str, dict[str, float]] = field(default_factory=dict)
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    profiled_ms: float = 0.0
    plain_ms: float = 0.0
    memory_format: str = "contiguous"


def _model(config: ProfileConfig) -> nn.Module:
    if not config.network.startswith("lr"):
        return build(config.network)
    if config.impl == FLOOR:
        return floor_network(build(config.network))
    return build(config.network, impl=config.impl)


def _scoped(label: str, op: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(op)
    def run(*args, **kwargs):
        with record_function(label):
            return op(*args, **kwargs)
    return run


def instrument(model: nn.Module) -> list[str]:
    """Open a scope around every module's forward and every LR layer's op call; returns the
    LR layers' names, in module order."""
    lr_layers, priors = [], []
    for name, module in model.named_modules():
        if isinstance(module, LocalRelation2d):
            lr_layers.append(name)
            module.op = _scoped(f"{SCOPE}{OP}|{name}", module.op)
        if isinstance(module, GeometricPrior):
            priors.append(name + ".")
    for name, module in model.named_modules():
        kind = next((make(name, module) for cls, make in KINDS.items()
                     if isinstance(module, cls)), None)
        if kind is None or name.startswith(tuple(priors)):  # a prior's convs are the prior's
            continue
        layer = next((lr for lr in lr_layers if name == lr or name.startswith(lr + ".")), "")
        _add_scope(module, f"{SCOPE}{kind}|{layer}")
    return lr_layers


def _add_scope(module: nn.Module, label: str) -> None:
    open_scopes: list = []

    def enter(mod, args):
        open_scopes.append(record_function(label).__enter__())

    def leave(mod, args, out):
        open_scopes.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


def _scope_of(event) -> str | None:
    """The label of the innermost scope around ``event`` (itself excluded), or None."""
    parent = event.cpu_parent
    while parent is not None and not parent.name.startswith(SCOPE):
        parent = parent.cpu_parent
    return None if parent is None else parent.name


def _backward(event) -> bool:
    """Whether ``event`` is (inside) the evaluation of an autograd node."""
    while event is not None:
        if event.name.startswith(BACKWARD):
            return True
        event = event.cpu_parent
    return False


def _own_ms(event) -> float:
    """``event``'s time less that of what is charged on its own inside it: the scopes (their
    operators are charged to them) and the autograd nodes (evaluated inside another node's
    backward: a reentrant ``torch.autograd.grad``, as the layer's fast path runs its op's)."""
    inside, todo = 0.0, list(event.cpu_children)
    while todo:
        child = todo.pop()
        if child.name.startswith((SCOPE, BACKWARD)):
            inside += child.cpu_time_total
        else:
            todo.extend(child.cpu_children)
    return (event.cpu_time_total - inside) / 1e3  # us -> ms


def attribute(events) -> dict[tuple[str, str, str], float]:
    """``{(kind, LR layer, "fwd" | "bwd"): ms}`` from one profiled pass's events."""
    # An operator records the sequence number the next autograd node will get, so the node with
    # number n was made by the last forward operator that recorded n.
    scope_of_seq: dict[int, str | None] = {}
    for event in sorted(events, key=lambda e: e.time_range.start):
        if event.sequence_nr >= 0 and not event.name.startswith(SCOPE) and not _backward(event):
            scope_of_seq[event.sequence_nr] = _scope_of(event)
    spent: dict[tuple[str, str, str], float] = defaultdict(float)
    for event in events:
        if event.name.startswith(SCOPE):
            continue
        parent = event.cpu_parent
        if event.name.startswith(BACKWARD):  # nested in another node's too: charged apart
            scope, where = scope_of_seq.get(event.sequence_nr), "bwd"
        elif parent is None or parent.name.startswith(SCOPE):
            scope, where = (None if parent is None else parent.name), "fwd"
        else:
            continue  # a child of another operator: inside its time
        _, kind, layer = scope.split("|") if scope else ("", OTHER, "")
        spent[(kind, layer, where)] += _own_ms(event)
    return dict(spent)


def _pass(config: ProfileConfig) -> tuple[Callable[[], object], nn.Module, str]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _model(config)
        images = torch.randn(config.batch, 3, config.size, config.size)
        labels = torch.randint(0, NUM_CLASSES, (config.batch,))
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train(config.train)
    images = images.contiguous(memory_format=fmt)

    def forward():
        with torch.no_grad():
            return model(images)

    def train_step():
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        return loss

    return (train_step if config.train else forward), model, (
        "channels_last" if config.channels_last else "contiguous")


def run_profile(config: ProfileConfig) -> Profile:
    """Profile ``config``'s pass (module docstring): per kind and per LR layer, in ms."""
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        step, model, fmt = _pass(config)
        for _ in range(config.warmup):
            step()
        plain = []
        for _ in range(config.rounds):
            start = time.perf_counter()
            step()
            plain.append(time.perf_counter() - start)
        lr_layers = instrument(model)
        rounds, totals = [], []
        for _ in range(config.rounds):
            prof = torch_profile(activities=[ProfilerActivity.CPU])
            # Kineto's C++ log lines on start and stop ("USDT: profiler_start", "gpuGetDeviceCount
            # failed" without a GPU): silenced there only, never around the profiled pass.
            with silenced_fds():
                prof.start()
            try:
                start = time.perf_counter()
                step()
                totals.append(time.perf_counter() - start)
            finally:
                with silenced_fds():
                    prof.stop()
            rounds.append(attribute(prof.events()))
    finally:
        torch.set_num_threads(threads)
    return _summarise(config, rounds, lr_layers, fmt, 1e3 * statistics.median(totals),
                      1e3 * statistics.median(plain))


def _summarise(config: ProfileConfig, rounds: list[dict], lr_layers: list[str], fmt: str,
               profiled_ms: float, plain_ms: float) -> Profile:
    keys = sorted({key for spent in rounds for key in spent})
    median = {key: statistics.median(spent.get(key, 0.0) for spent in rounds) for key in keys}
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"fwd": 0.0, "bwd": 0.0})
    layers = {name: {"op fwd": 0.0, "op bwd": 0.0, "layer fwd": 0.0, "layer bwd": 0.0}
              for name in lr_layers}
    for (kind, layer, where), ms in median.items():
        kinds[kind][where] += ms
        if layer:
            layers[layer][f"layer {where}"] += ms
            if kind == OP:
                layers[layer][f"op {where}"] += ms
    order = sorted(kinds, key=lambda kind: -(kinds[kind]["fwd"] + kinds[kind]["bwd"]))
    return Profile(config=config, kinds={kind: kinds[kind] for kind in order}, layers=layers,
                   profiled_ms=profiled_ms, plain_ms=plain_ms, memory_format=fmt)
