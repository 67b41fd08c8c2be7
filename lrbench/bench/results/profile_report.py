"""A network profile (:mod:`lrbench.bench.measure.profile`) as Markdown, CSV and a PNG.

``profile.md``: the command that made it, the machine, time per kind of module and per LR layer,
forward and backward; ``profile.csv``: the same numbers, one row per (section, name); ``profile.png``:
forward and backward time per kind as horizontal bars. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from matplotlib.figure import Figure

from lrbench.bench.measure.machine import machine_info, threads_now
from lrbench.bench.measure.profile import Profile
from lrbench.files import atomic_open, atomic_write
from lrbench.tables import markdown_table

FILES = ("profile.md", "profile.csv", "profile.png")


def kind_rows(profile: Profile) -> list[dict]:
    """One row per kind: forward, backward and total ms, and the total's share of the pass."""
    total = sum(v["fwd"] + v["bwd"] for v in profile.kinds.values()) or 1.0
    return [{"kind": kind, "fwd ms": v["fwd"], "bwd ms": v["bwd"], "total ms": v["fwd"] + v["bwd"],
             "% of pass": 100 * (v["fwd"] + v["bwd"]) / total}
            for kind, v in profile.kinds.items()]


def layer_rows(profile: Profile) -> list[dict]:
    """One row per LR layer: the op's and the whole layer's forward and backward ms."""
    rows = []
    for name, v in profile.layers.items():
        row = {"LR layer": name, **v}
        if v["op fwd"] > 0:
            row["op (fwd+bwd) / fwd"] = (v["op fwd"] + v["op bwd"]) / v["op fwd"]
        rows.append(row)
    return rows


def markdown(profile: Profile, command: str) -> str:
    c = profile.config
    pass_ = "training step (forward, cross-entropy, backward)" if c.train else "eval forward"
    machine = machine_info()
    attributed = sum(v["fwd"] + v["bwd"] for v in profile.kinds.values())
    parts = [
        f"# Profile: {c.network}, {pass_}",
        f"Written by `{command}`.",
        f"- batch {c.batch}, {c.size}x{c.size}, float32, {profile.memory_format}, "
        f"implementation {c.impl or 'default (fastest usable)'}\n"
        f"- CPU: {machine['cpu']}; {c.threads or threads_now()} threads; torch "
        f"{machine['torch']}; git {machine['git_rev']}; allocator {machine['allocator']}\n"
        f"- the pass: {profile.plain_ms:,.1f} ms without the profiler, {profile.profiled_ms:,.1f} "
        f"ms under it (median of {c.rounds}); {attributed:,.1f} ms attributed below",
        "How: `torch.profiler` (CPU) with a `record_function` scope around every module's "
        "forward and every op call; each forward operator is charged to its innermost scope, "
        "each autograd node's backward to the scope of the forward operator that made it "
        "(matched by sequence number). Times are wall time on the calling thread per top-level "
        "operator (intra-op threads' work included), medians over the rounds. `other`: the loss, "
        "gradient accumulation into `.grad`, and what no module holds. `LR key/query 1x1`: the "
        "LR layer's own work (the fused key/query projection of the fast path, its slices and "
        "casts), `residual add`: the block's own work.",
        "## Time per kind of module\n\n" + markdown_table(kind_rows(profile)),
    ]
    if profile.layers:
        parts.append("## Time per LR layer\n\n`layer`: projections, prior, op and final 1x1 "
                     "together.\n\n" + markdown_table(layer_rows(profile)))
    parts.append("![time per kind](profile.png)")
    return "\n\n".join(parts) + "\n"


def _csv(profile: Profile) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["section", "name", "part", "ms"])
    for kind, v in profile.kinds.items():
        writer.writerows(["kind", kind, where, ms] for where, ms in v.items())
    for name, v in profile.layers.items():
        writer.writerows(["lr_layer", name, part, ms] for part, ms in v.items())
    return buffer.getvalue()


def _plot(profile: Profile, path: Path) -> None:
    kinds = list(profile.kinds)[::-1]  # largest on top
    fig = Figure(figsize=(7.5, 0.35 * len(kinds) + 1.5))
    ax = fig.subplots()
    fwd = [profile.kinds[k]["fwd"] for k in kinds]
    bwd = [profile.kinds[k]["bwd"] for k in kinds]
    ax.barh(kinds, fwd, color="C0", label="forward")
    ax.barh(kinds, bwd, left=fwd, color="C1", label="backward")
    c = profile.config
    ax.set_xlabel("ms (median over rounds, under torch.profiler)")
    ax.set_title(f"{c.network} {'train step' if c.train else 'forward'}, B={c.batch}, "
                 f"{c.size}x{c.size}, {profile.memory_format}, {c.impl or 'default'}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def write_profile(profile: Profile, out_dir: str | Path, command: str) -> Path:
    """Write :data:`FILES` into ``out_dir`` (created); returns the Markdown's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "profile.csv", _csv(profile))
    _plot(profile, out_dir / "profile.png")
    return atomic_write(out_dir / "profile.md", markdown(profile, command))
