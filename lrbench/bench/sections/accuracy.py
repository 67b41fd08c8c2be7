"""The report's accuracy section: how close each implementation came to the gate's limits.

Per implementation and dtype, over its gated rows (timed or failed): the worst ``err_over_limit``
(at most 1 for a row that passed), the value it came from, where the limits came from, and how
many rows failed; below it, every looser limit an implementation declared, with its reason
(:mod:`lrbench.accuracy.limits`).
"""

from __future__ import annotations

import pandas as pd

from lrbench.bench.results.metrics import impl_of


def worst_over_limit(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (implementation, dtype) with a gated row."""
    rows = frame[frame["status"].isin(["ok", "failed"]) & frame["err_over_limit"].notna()]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(label=rows["case_id"].map(impl_of))
    out = []
    for (label, dtype), group in rows.groupby(["label", "dtype"], sort=False):
        worst = group.loc[group["err_over_limit"].idxmax()]
        out.append({"impl": label, "dtype": dtype, "gated rows": len(group),
                    "worst err / limit": worst["err_over_limit"],
                    "value": worst["gate_value"], "case": worst["case_id"],
                    "limits": ", ".join(sorted(set(group["limit_source"]) - {""})),
                    "failed": int((group["status"] == "failed").sum())})
    return pd.DataFrame(out)


def declared_loosenings(impls: list[str]) -> list[str]:
    """``- impl, dtype: forward Fx, backward Bx: reason`` for every declared loosening of the
    registered implementations among ``impls``."""
    from lrbench import registry

    lines = []
    for name in impls:
        try:
            impl = registry.get(name)
        except ValueError:  # a plugin not loaded in this process
            continue
        for dtype, loose in impl.loosened.items():
            lines.append(f"- `{name}`, {str(dtype).removeprefix('torch.')}: forward "
                         f"{loose.forward:g}x, backward {loose.backward:g}x the suite's limits: "
                         f"{loose.reason}")
    return lines


INTRO = ("Every value is held to `|err| <= atol + rtol*|ref|` with the suite's limits for its "
         "dtype and reduction length (docs/benchmarking.md, \"The accuracy gate\"); "
         "`worst err / limit` is the largest ratio over every element compared (at most 1 for a "
         "row that passed), `value` the output (`y`), a gradient, or the network's logits. "
         "`limits`: `suite`, or `implementation` where it declared looser limits (listed below).")


def loosening_text(frame: pd.DataFrame) -> str:
    impls = sorted(set(frame.loc[frame["limit_source"] == "implementation", "impl"]))
    lines = declared_loosenings(impls)
    if not impls:
        return "No implementation in these rows was held to looser limits than the suite's."
    return "Declared looser limits:\n\n" + ("\n".join(lines) or
                                            "- (their implementations are not registered here)")
