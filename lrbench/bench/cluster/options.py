"""The options of a sharded run (``--executor``, ``--nodes``, Slurm's), checked before anything
is submitted: every error names the option and what was expected.

submitit is the optional extra ``lrbench[cluster]``; :func:`require_submitit` says so when it is
missing. The Slurm parameter names are submitit's own (``SlurmExecutor``'s parameter list).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

EXECUTORS = ("local", "slurm")
# After the preemption signal, how long the case in flight may go on (--grace): below Slurm's
# usual preemption GraceTime, and well below submitit's 90 s between its signal and the time limit.
GRACE_S = 20.0
EXTRA_HINT = "pip install 'lrbench[cluster]'  (or: pip install submitit)"
# Set by lrbench itself (one node per shard, the node to itself) or by a dedicated option.
OWNED = {"nodes": "--nodes", "exclusive": "(always: one node per shard, to itself)",
         "time": "--time", "timeout_min": "--time", "partition": "--partition",
         "gpus_per_node": "--gpus-per-node", "array_parallelism": "--nodes",
         "job_name": "(lrbench names its jobs)"}
# Slurm's --time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
# Values that submitit (and sbatch) want as numbers or flags rather than text.
_INT_VALUE = re.compile(r"^\d+$")


def require_submitit(executor: str):
    """Import submitit, or raise ``RuntimeError`` naming the extra that provides it."""
    try:
        import submitit
    except ImportError as err:
        raise RuntimeError(f"--executor {executor} needs submitit, the optional extra "
                           f"lrbench[cluster]: {EXTRA_HINT}") from err
    return submitit


def parse_time(text: str) -> int:
    """Slurm's ``--time`` (``90``, ``1:30:00``, ``2-00``, ``1-12:00:00``...) -> whole minutes."""
    match = _TIME.match(str(text).strip())
    if not match:
        raise ValueError(f"--time must be Slurm's time format (minutes, MM:SS, HH:MM:SS, D-HH, "
                         f"D-HH:MM or D-HH:MM:SS), got {text!r}")
    days = int(match["d"] or 0)
    a, b, c = (int(match[k]) if match[k] is not None else None for k in "abc")
    if match["d"] is not None:  # D-H, D-H:M, D-H:M:S
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # M:S
        seconds = a * 60 + b
    else:  # M
        seconds = a * 60
    if seconds <= 0:
        raise ValueError(f"--time must be positive, got {text!r}")
    return math.ceil(seconds / 60)


def slurm_parameter_names() -> set[str]:
    """The parameters submitit's ``SlurmExecutor`` accepts (its own list)."""
    submitit = require_submitit("slurm")
    return set(submitit.SlurmExecutor._valid_parameters())


def parse_slurm_args(items: tuple[str, ...] | list[str], known: set[str]) -> dict:
    """``("qos=high", "mem-per-gpu=80G")`` -> ``{"qos": "high", "mem_per_gpu": "80G"}``.

    Each item must be ``KEY=VALUE`` with KEY one of ``known`` (dashes read as underscores) and not
    one that lrbench sets itself; digits become integers, ``true`` a flag.
    """
    params = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise ValueError(f"--slurm-arg must look like KEY=VALUE (e.g. qos=high), got {item!r}")
        if key in OWNED:
            raise ValueError(f"--slurm-arg {key}: set by lrbench; use {OWNED[key]}")
        if key not in known:
            raise ValueError(f"--slurm-arg {key}: not a submitit Slurm parameter; known: "
                             + ", ".join(sorted(known - set(OWNED))))
        value = value.strip()
        params[key] = int(value) if _INT_VALUE.match(value) else True if value == "true" else value
    return params


@dataclass(frozen=True)
class ClusterOptions:
    """How a run is spread: ``nodes`` shards, one per node (Slurm) or one after another (local)."""

    executor: str
    nodes: int = 1
    partition: str | None = None
    gpus_per_node: int | None = None
    time_min: int | None = None
    slurm_args: dict = field(default_factory=dict)
    max_retries: int = 2  # resubmissions of a shard that ended unfinished (killed, crashed)
    grace_s: float = GRACE_S  # after the preemption signal, how long the case in flight may go on

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"--executor must be one of {list(EXECUTORS)}, got {self.executor!r}")
        if not isinstance(self.nodes, int) or self.nodes < 1:
            raise ValueError(f"--nodes must be an integer >= 1, got {self.nodes!r}")
        if not (isinstance(self.grace_s, int | float) and self.grace_s > 0):
            raise ValueError(f"--grace must be a number of seconds > 0, got {self.grace_s!r}")
        if self.gpus_per_node is not None and self.gpus_per_node < 0:
            raise ValueError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node!r}")
        if self.executor == "slurm" and self.time_min is None:
            raise ValueError("--time is required with --executor slurm (e.g. --time 2:00:00); "
                             "without it submitit would ask Slurm for 5 minutes per shard")
        if self.executor == "local" and (self.partition is not None or self.slurm_args):
            given = "--partition" if self.partition is not None else "--slurm-arg"
            raise ValueError(f"{given}: a Slurm option; it needs --executor slurm")

    def slurm_parameters(self, shards: int) -> dict:
        """submitit ``SlurmExecutor`` parameters of the job array: one node per shard, to itself,
        all shards at once."""
        params = {"nodes": 1, "exclusive": True, "array_parallelism": shards,
                  "job_name": "lrbench", **self.slurm_args}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_node is not None:
            params["gpus_per_node"] = self.gpus_per_node
        if self.time_min is not None:
            params["time"] = self.time_min
        return params


def make_options(executor: str, nodes: int | None = None, partition: str | None = None,
                 gpus_per_node: int | None = None, time: str | None = None,
                 slurm_args: tuple[str, ...] = (), grace_s: float | None = None) -> ClusterOptions:
    """Check the command line's strings and build the options (``ValueError`` names the option).

    submitit must be installed (checked first: ``RuntimeError`` naming the extra).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {list(EXECUTORS)}, got {executor!r}")
    require_submitit(executor)
    if executor == "local" and slurm_args:
        raise ValueError("--slurm-arg: a Slurm option; it needs --executor slurm")
    known = slurm_parameter_names() if executor == "slurm" else set()
    return ClusterOptions(
        executor=executor, nodes=1 if nodes is None else nodes, partition=partition,
        gpus_per_node=gpus_per_node, time_min=None if time is None else parse_time(time),
        slurm_args=parse_slurm_args(slurm_args, known),
        grace_s=GRACE_S if grace_s is None else grace_s)
