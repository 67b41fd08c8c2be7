"""From what the user typed to what runs: preset + axis overrides + shard -> cases and timing.

Everything here takes the command line's strings and raises ``ValueError`` naming the option,
so that ``cli.py`` only has to turn the error into a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass

from lrbench.bench.matrix.axes import parse_values
from lrbench.bench.matrix.cases import Case, expand, parse_shard, shard
from lrbench.bench.matrix.presets import get_preset
from lrbench.bench.measure.runner import Timing


@dataclass(frozen=True)
class Plan:
    """The cases one ``lrbench run`` will run, how they are timed, and a label for its files."""

    cases: list[Case]
    timing: Timing
    label: str


def make_plan(preset: str, overrides: dict[str, str | None] | None = None,
              shard_spec: str | None = None, min_rounds: int | None = None,
              max_time: float | None = None, passes: int | None = None,
              limits: bool | None = None) -> Plan:
    """Build the plan of a run.

    Args:
        preset: a preset name (:data:`lrbench.bench.matrix.presets.PRESETS`).
        overrides: option name -> comma-separated values, e.g. ``{"kernel": "3,5"}``; ``None``
            values are ignored.
        shard_spec: ``"i/n"`` to run only slice ``i`` of ``n``.
        min_rounds, max_time, passes: replace the preset's timing.
        limits: ``False`` leaves the machine's limits unmeasured (:class:`Timing`).
    """
    config = get_preset(preset)
    parsed = {name: parse_values(name, text)
              for name, text in (overrides or {}).items() if text is not None}
    cases = expand(config, parsed)
    label = preset
    if shard_spec is not None:
        i, n = parse_shard(shard_spec)
        cases = shard(cases, i, n)
        label = f"{preset}-shard-{i}-of-{n}"
    timing = dict(config.get("timing", {}))
    if min_rounds is not None:
        timing["min_rounds"] = min_rounds
    if max_time is not None:
        timing["max_time"] = max_time
    if passes is not None:
        timing["passes"] = passes
    if limits is not None:
        timing["limits"] = limits
    return Plan(cases=cases, timing=Timing(**timing), label=label)
