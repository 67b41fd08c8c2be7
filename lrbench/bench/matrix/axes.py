"""The axes of the benchmark matrix: the one table that the CLI, the planner and the expansion read.

An axis is something a preset sets and the command line can override with a comma-separated
list (``--kernel 3,5``). Shape axes set a field of the case's shape; the others choose among
implementations, dtypes, devices and passes.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPE_FIELDS = ("B", "C", "H", "W", "k", "m", "stride")
DTYPES = ("float32", "float64", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")
# fwd: forward without autograd; bwd: backward alone (graph built outside the timed region);
# fwd_bwd: forward and backward; train: forward, cross-entropy, backward and an SGD step.
PASSES = ("fwd", "bwd", "fwd_bwd", "train")
# eager: as written; inductor: torch.compile(backend="inductor"), first call's time in compile_s.
COMPILE_MODES = ("eager", "inductor")
# Memory formats of the 4-D inputs (and the module): contiguous NCHW, channels_last NHWC.
FORMATS = ("contiguous", "channels_last")


@dataclass(frozen=True)
class Axis:
    """One overridable axis.

    Attributes:
        name: the override key and the command-line option (``--name``).
        kind: element type of its list (``str`` or ``int``; ints must be positive).
        help: what the values are, for ``--help``.
        field: the shape field it sets (``None`` for the non-shape axes). ``size`` sets ``H``
            and ``W`` follows.
        group_key: the key of a preset group that it replaces (non-shape axes).
        choices: the allowed values, when fixed (implementations come from the registry).
    """

    name: str
    kind: type
    help: str
    field: str | None = None
    group_key: str | None = None
    choices: tuple[str, ...] | None = None


AXES: tuple[Axis, ...] = (
    Axis("impl", str, "implementations, e.g. unfold,fused_cpu", group_key="impls"),
    Axis("dtype", str, "dtypes: " + ",".join(DTYPES), group_key="dtypes", choices=DTYPES),
    Axis("device", str, "devices: " + ",".join(DEVICES), group_key="devices", choices=DEVICES),
    Axis("pass", str, "passes: fwd,bwd,fwd_bwd (op, layer, conv3x3); fwd,train (networks)",
         group_key="passes", choices=PASSES),
    Axis("compile", str, "torch.compile modes: eager (none), inductor", group_key="compile",
         choices=COMPILE_MODES),
    Axis("format", str, "memory formats of the inputs: contiguous (NCHW), channels_last (NHWC); "
         "op, layer, conv3x3 (networks try both and keep the faster)", group_key="formats",
         choices=FORMATS),
    Axis("batch", int, "batch sizes B", field="B"),
    Axis("channels", int, "channels C", field="C"),
    Axis("size", int, "input sizes H = W", field="H"),
    Axis("kernel", int, "kernel sizes k (odd)", field="k"),
    Axis("m", int, "channels per weight map m", field="m"),
    Axis("stride", int, "strides", field="stride"),
)
BY_NAME = {axis.name: axis for axis in AXES}


def get_axis(name: str) -> Axis:
    """The axis called ``name``; an unknown name lists the ones that exist."""
    if name not in BY_NAME:
        raise ValueError(f"unknown override {name!r}; known: {list(BY_NAME)}")
    return BY_NAME[name]


def parse_values(name: str, text: str) -> list:
    """``"3,5,7"`` for axis ``name`` -> ``[3, 5, 7]``; a ValueError naming ``--name`` otherwise."""
    axis = get_axis(name)
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ValueError(f"--{name} needs at least one value, got {text!r}")
    if axis.kind is int:
        bad = [item for item in items if not item.isdigit() or int(item) < 1]
        if bad:
            raise ValueError(f"--{name} takes positive integers, got {', '.join(bad)}")
        return [int(item) for item in items]
    return items


def check_choices(name: str, values: list, choices=None) -> None:
    """Every value of ``--name`` must be one of ``choices`` (default: the axis's own)."""
    choices = get_axis(name).choices if choices is None else choices
    if choices is None:
        return
    bad = [v for v in values if v not in choices]
    if bad:
        raise ValueError(f"--{name}: unknown {', '.join(map(repr, bad))}; "
                         f"choose from {', '.join(choices)}")
