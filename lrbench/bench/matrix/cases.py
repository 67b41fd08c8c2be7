"""One benchmark case, and the expansion of a preset (plus overrides) into the list of cases.

The matrix axes are implementation x shape (B, C, H, W, k, m, stride) x dtype x device x pass
x memory format. Each target (:data:`TARGET_AXES`) says which shape fields, passes and formats
apply to it, so that an override such as ``--kernel 3,5`` changes the local relation cases and
leaves the 3x3 conv alone.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch

from lrbench import registry
from lrbench.bench.matrix.axes import (
    AXES,
    COMPILE_MODES,
    FORMATS,
    SHAPE_FIELDS,
    check_choices,
    get_axis,
)
from lrbench.inputs import Shape

# What each target varies. ``impl``: None when the target runs one fixed implementation
# (the name recorded instead); ``fixed``: values of the shape fields it does not vary;
# ``compiles``: the compile modes it can be timed in (default: eager only); ``floor``: each shape
# also runs as a FLOOR row, the network with the op replaced by a free stand-in
# (:mod:`lrbench.bench.measure.floor`); ``formats``: the memory formats its inputs can be given in
# (:data:`lrbench.bench.matrix.axes.FORMATS`; absent: contiguous only); ``format_by_trial``: the
# target runs in the faster of both, chosen by a trial and recorded in the row's ``memory_format``
# (the case's own is then meaningless, and its row leaves the column for the run to fill).
TARGET_AXES: dict[str, dict] = {
    "op": {"fields": SHAPE_FIELDS, "passes": ("fwd", "bwd", "fwd_bwd"), "impl": None,
           "fixed": {}, "compiles": COMPILE_MODES, "formats": FORMATS},
    "layer": {"fields": SHAPE_FIELDS, "passes": ("fwd", "bwd", "fwd_bwd"), "impl": None,
              "fixed": {}, "formats": FORMATS},
    "natten": {"fields": ("B", "C", "H", "W", "k", "m"), "passes": ("fwd", "bwd", "fwd_bwd"),
               "impl": "natten", "fixed": {"stride": 1}},
    "conv3x3": {"fields": ("B", "C", "H", "W", "stride"), "passes": ("fwd", "bwd", "fwd_bwd"),
                "impl": "torch", "fixed": {"k": 3, "m": 1}, "formats": FORMATS},
    "lrnet50": {"fields": ("B", "H", "W"), "passes": ("fwd", "train"), "impl": None,
                "fixed": {"C": 3, "k": 7, "m": 8, "stride": 1}, "floor": True,
                "format_by_trial": True},
    "resnet50": {"fields": ("B", "H", "W"), "passes": ("fwd", "train"), "impl": "torch",
                 "fixed": {"C": 3, "k": 3, "m": 1, "stride": 1}, "format_by_trial": True},
}
# The targets whose rows name the format they ran in from the case (the others: the trial's).
FORMAT_TARGETS = tuple(name for name, axes in TARGET_AXES.items() if not axes.get("format_by_trial"))
# The ``impl`` of a network's floor rows: not an implementation of the op (never in the registry,
# never a baseline), the name of the stand-in that replaces it.
FLOOR = "floor"
# The implementation a group's speedups are measured against, unless the group names another.
DEFAULT_BASELINE = "unfold"
# A case id: these parts joined by ":" (``shape`` is :meth:`Case.label`).
CASE_ID_PARTS = ("target", "impl", "shape", "dtype", "device", "pass")


def target_formats(target: str) -> tuple[str, ...]:
    """The memory formats a case of ``target`` can be given (the first is the default)."""
    return TARGET_AXES[target].get("formats", FORMATS[:1])


def compiled_name(impl: str, mode: str) -> str:
    """``unfold`` run eagerly, ``unfold@inductor`` compiled with the ``inductor`` backend."""
    return impl if mode in ("", "eager") else f"{impl}@{mode}"


def case_id(**parts: str) -> str:
    """``target:impl:shape:dtype:device:pass`` from its parts (:data:`CASE_ID_PARTS`)."""
    return ":".join(str(parts[name]) for name in CASE_ID_PARTS)


def parse_case_id(text: str) -> dict[str, str]:
    """The parts of a case id, by name; a ValueError when it has not six parts."""
    parts = str(text).split(":")
    if len(parts) != len(CASE_ID_PARTS):
        raise ValueError(f"case id must look like {':'.join(CASE_ID_PARTS)}, got {text!r}")
    return dict(zip(CASE_ID_PARTS, parts, strict=True))


def with_impl(text: str, impl: str) -> str:
    """The same case id with another implementation (the baseline's case, for a speedup)."""
    return case_id(**{**parse_case_id(text), "impl": impl})


@dataclass(frozen=True)
class Case:
    """One row of the matrix: what is timed, on which shape, dtype, device and pass."""

    target: str
    impl: str
    B: int
    C: int
    H: int
    W: int
    k: int
    m: int
    stride: int
    dtype: str
    device: str
    pass_: str
    baseline: str = ""  # the implementation its speedup is measured against ("" for none)
    compile: str = "eager"  # "eager", or the torch.compile backend ("inductor")
    memory_format: str = "contiguous"  # of the inputs (and module): one of the target's formats

    def __post_init__(self) -> None:
        if self.target not in TARGET_AXES:
            raise ValueError(f"target must be one of {list(TARGET_AXES)}, got {self.target!r}")
        formats = target_formats(self.target)
        if self.memory_format not in formats:
            raise ValueError(f"memory_format of a {self.target} case must be one of "
                             f"{list(formats)}, got {self.memory_format!r}")
        self.shape  # noqa: B018  (Shape validates: positive sizes, odd k, groups cover C)

    @property
    def shape(self) -> Shape:
        return Shape(B=self.B, C=self.C, H=self.H, W=self.W, k=self.k, m=self.m,
                     stride=self.stride)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def label(self) -> str:
        """The shape, in the fields that apply to the target: ``B8-C100-56x56-k7-m8-s1``, then the
        memory format where it is not the default (``B8-C100-56x56-k7-m8-s1-channels_last``), so
        that case ids made before the format axis existed still name the same cases."""
        fields = TARGET_AXES[self.target]["fields"]
        parts = [f"B{self.B}"]
        if "C" in fields:
            parts.append(f"C{self.C}")
        parts.append(f"{self.H}x{self.W}")
        parts += [f"{name}{getattr(self, field)}" for name, field
                  in (("k", "k"), ("m", "m"), ("s", "stride")) if field in fields]
        if self.memory_format != FORMATS[0]:
            parts.append(self.memory_format)
        return "-".join(parts)

    @property
    def impl_label(self) -> str:
        """The implementation as run: ``unfold``, or ``unfold@inductor`` when compiled (the
        registry name of the compiled variant, see :mod:`lrbench.bench.measure.compiling`)."""
        return compiled_name(self.impl, self.compile)

    @property
    def compiled(self) -> bool:
        return self.compile not in ("", "eager")

    @property
    def case_id(self) -> str:
        """Stable identifier: ``target:impl:shape:dtype:device:pass`` (the baseline is not
        part of it; ``impl`` is :attr:`impl_label`)."""
        return case_id(target=self.target, impl=self.impl_label, shape=self.label(),
                       dtype=self.dtype, device=self.device, **{"pass": self.pass_})

    def as_row(self) -> dict:
        """The case's columns (``memory_format`` empty for a network: the trial's, filled in once
        it ran)."""
        row = asdict(self)
        row["pass"] = row.pop("pass_")
        if TARGET_AXES[self.target].get("format_by_trial"):
            row["memory_format"] = ""
        return row


def expand(preset: dict, overrides: dict | None = None) -> list[Case]:
    """All the cases of ``preset``, with ``overrides`` replacing the values of an axis.

    Args:
        preset: a dict of :data:`lrbench.bench.matrix.presets.PRESETS`.
        overrides: optional lists by axis: ``impl``, ``dtype``, ``device``, ``pass``,
            ``compile`` (replace the preset's values; a group without ``compile`` runs eager),
            ``format`` (likewise; a group without ``formats`` runs contiguous; targets without
            the axis ignore it) and ``batch``, ``channels``, ``size`` (H = W), ``kernel``,
            ``m``, ``stride`` (every preset shape is repeated with each value; fields that do
            not apply to a target are left alone).

    Returns:
        Unique cases, in preset order, with the group's baseline (``"baseline"``, default
        :data:`DEFAULT_BASELINE`) first among the implementations of each shape; each case
        records its baseline (empty for targets that run one fixed implementation). Targets
        with a floor (:data:`TARGET_AXES`) add a :data:`FLOOR` case after the implementations
        of each shape, dtype, device and pass (no baseline).

    Raises:
        ValueError: an unknown implementation, dtype, device or pass, an invalid shape, or an
            override that leaves no case.
    """
    overrides = {key: value for key, value in (overrides or {}).items() if value}
    for name, values in overrides.items():
        get_axis(name)  # raises on an unknown axis
        check_choices(name, values, registry.implementations() if name == "impl" else None)

    cases: dict[str, Case] = {}
    for group in preset["groups"]:
        axes = TARGET_AXES[group["target"]]
        baseline = "" if axes["impl"] is not None else group.get("baseline", DEFAULT_BASELINE)
        impls = _impls(group, axes, overrides, baseline)
        passes = [p for p in overrides.get("pass", group["passes"]) if p in axes["passes"]]
        modes = [mode for mode in overrides.get("compile", group.get("compile", ["eager"]))
                 if mode in axes.get("compiles", ("eager",))]
        formats = _formats(group, overrides)
        for shape in _shapes(group, axes, overrides):
            for dtype, device, pass_, fmt in itertools.product(
                    overrides.get("dtype", group["dtypes"]),
                    overrides.get("device", group["devices"]), passes, formats):
                for impl, mode in itertools.product(impls, modes):
                    case = Case(target=group["target"], impl=impl, dtype=dtype, device=device,
                                pass_=pass_, baseline=baseline, compile=mode, memory_format=fmt,
                                **shape)
                    cases.setdefault(case.case_id, case)
                if axes.get("floor"):  # after the implementations; no speedup, no compile
                    case = Case(target=group["target"], impl=FLOOR, dtype=dtype, device=device,
                                pass_=pass_, **shape)
                    cases.setdefault(case.case_id, case)
    if not cases:
        raise ValueError("the overrides leave no case to run (e.g. a --pass that no target "
                         f"of this preset has; passes per target: "
                         f"{ {t: a['passes'] for t, a in TARGET_AXES.items()} })")
    return list(cases.values())


def _formats(group: dict, overrides: dict) -> list[str]:
    """The group's memory formats that its target takes (a target without the axis: its default,
    whatever ``--format`` says, as a shape field that does not apply is left alone)."""
    own = target_formats(group["target"])
    check_choices("format", group.get("formats", []))  # a preset's typo is an error, not no case
    if len(own) == 1:
        return list(own)
    return [fmt for fmt in overrides.get("format", group.get("formats", own[:1])) if fmt in own]


def _impls(group: dict, axes: dict, overrides: dict, baseline: str) -> list[str]:
    if axes["impl"] is not None:
        return [axes["impl"]]
    impls = overrides.get("impl", group.get("impls", "all"))
    if impls == "all":
        impls = registry.implementations()
    return sorted(impls, key=lambda name: name != baseline)  # stable: the baseline first


def _shapes(group: dict, axes: dict, overrides: dict) -> list[dict]:
    """Each preset shape, repeated for every combination of the overridden fields."""
    fields, fixed = axes["fields"], axes["fixed"]
    sizes = overrides.get("size") if "H" in fields else None
    shapes = []
    for base in group["shapes"]:
        choices = {f: [fixed[f]] if f in fixed else [base[f]] for f in SHAPE_FIELDS}
        for axis in AXES:
            if axis.field and axis.name in overrides and axis.field in fields:
                choices[axis.field] = overrides[axis.name]
        if sizes:
            choices["H"] = sizes  # W follows H
        for values in itertools.product(*choices.values()):
            shape = dict(zip(choices, values, strict=True))
            shapes.append({**shape, "W": shape["H"]} if sizes else shape)
    return shapes


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: the second of four slices (1-based)."""
    parts = str(text).split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shard must look like i/n (e.g. 1/4), got {text!r}")
    i, n = int(parts[0]), int(parts[1])
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard i/n needs 1 <= i <= n, got {text!r}")
    return i, n


def shard(cases: list[Case], i: int, n: int) -> list[Case]:
    """Slice ``i`` of ``n``: every n-th case in case-id order, so the split does not depend on
    the order of the preset and the slices are disjoint and cover all cases."""
    ids = sorted(case.case_id for case in cases)
    mine = {case_id for index, case_id in enumerate(ids) if index % n == i - 1}
    return [case for case in cases if case.case_id in mine]
