"""Honest scaling fits: time against the closed-form MACs, with a fixed term.

Over a sweep of input sizes (H = W, everything else fixed), each implementation's median time is
fitted as ``t = t0 + c * MACs^b`` (``t0 >= 0``: launch, dispatch and allocation costs that do
not grow with the work; ``b``: how time grows with it; 1 means in proportion). The fit minimises
the squared *relative* residuals, so the small sizes count as much as the large ones.

``b`` gets a 95% interval by bootstrap: each size's median is redrawn from its rounds
(``rounds_s``; for older rows without rounds, from a normal law with the standard error of a median,
``1.2533 * (IQR / 1.349) / sqrt(rounds)``) and the fit repeated.

A fit says something about scaling only when the work, not the fixed term, makes the time. The
verdict (:data:`VERDICTS`) is:

- ``fixed term dominates`` when ``t0`` is :data:`FIXED_SHARE` (half) or more of the fitted time at the
  largest size: ``b`` then describes how the overhead fades, not how the op scales, and is not
  reported as an exponent;
- ``uncertain`` when the interval of ``b`` is wider than :data:`WIDE` or fewer than
  :data:`MIN_SIZES` sizes were measured (three parameters from three points fit exactly);
- ``scaling`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrbench.bench.figures.rows import families, family_title, labelled
from lrbench.bench.matrix.presets import PRESETS
from lrbench.bench.results import records

B_RANGE = (0.25, 3.0)  # exponents searched
FIXED_SHARE = 0.5  # t0 / t(largest) at or above which the fit measures overhead
WIDE = 0.5  # interval of b wider than this: uncertain
MIN_SIZES = 4
RESAMPLES = 200
VERDICTS = ("scaling", "uncertain", "fixed term dominates")
_GRID = np.linspace(*B_RANGE, 111)


@dataclass(frozen=True)
class Fit:
    """``t = t0 + c * (macs / macs.max())^b`` over one sweep."""

    t0: float  # seconds
    c: float  # seconds at the largest size, less t0
    b: float
    low: float  # 95% bootstrap interval of b
    high: float
    fixed_share: float  # t0 / fitted time at the largest size
    sizes: int
    verdict: str


def _solve(x: np.ndarray, t: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each exponent in ``b``: the best ``t0 >= 0``, ``c >= 0`` (relative least squares, the
    2x2 normal equations) and the loss."""
    w = 1 / t  # the residual of a point is (t0 + c * x^b) / t - 1
    u = w[None, :] * x[None, :] ** b[:, None]  # (len(b), n)
    s_ww, s_w = w @ w, w.sum()
    s_wu, s_uu, s_u = u @ w, (u * u).sum(axis=1), u.sum(axis=1)
    det = s_ww * s_uu - s_wu**2
    safe = np.where(np.abs(det) > 1e-300, det, np.inf)
    t0 = (s_w * s_uu - s_u * s_wu) / safe
    c = (s_ww * s_u - s_wu * s_w) / safe
    # one of them on its bound: fit the other alone, keep the better of the two
    t0_only, c_only = np.full_like(c, max(s_w / s_ww, 0.0)), np.maximum(s_u / s_uu, 0.0)
    bound = (t0 < 0) | (c < 0) | ~np.isfinite(t0)

    def loss(a, k):
        return ((a[:, None] * w[None, :] + k[:, None] * u - 1) ** 2).sum(axis=1)

    loss_c, loss_t0 = loss(np.zeros_like(c), c_only), loss(t0_only, np.zeros_like(c))
    use_c = loss_c <= loss_t0
    t0 = np.where(bound, np.where(use_c, 0.0, t0_only), t0)
    c = np.where(bound, np.where(use_c, c_only, 0.0), c)
    return t0, c, loss(t0, c)


def fit_power(x: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """``(t0, c, b)`` of ``t = t0 + c * x^b`` (``x`` scaled to at most 1): a grid over ``b``,
    refined once around the best point."""
    best = _GRID[np.argmin(_solve(x, t, _GRID)[2])]
    step = _GRID[1] - _GRID[0]
    fine = np.clip(np.linspace(best - step, best + step, 41), *B_RANGE)
    t0, c, losses = _solve(x, t, fine)
    i = int(np.argmin(losses))
    return float(t0[i]), float(c[i]), float(fine[i])


def _redraws(rows: pd.DataFrame, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` bootstrap draws of each row's median, ``(n, len(rows))``."""
    columns = []
    for _, row in rows.iterrows():
        rounds = records.parse_rounds(row.get("rounds_s", ""))
        median = float(row["median_s"])
        if len(rounds) >= 2:
            picks = rng.integers(0, len(rounds), (n, len(rounds)))
            columns.append(np.median(np.asarray(rounds)[picks], axis=1))
        else:
            count = max(float(row["rounds"]) if pd.notna(row.get("rounds")) else 1.0, 1.0)
            iqr = float(row["iqr_s"]) if pd.notna(row.get("iqr_s")) else 0.0
            sigma = 1.2533 * iqr / 1.349 / np.sqrt(count)  # standard error of a median
            columns.append(np.maximum(median + rng.normal(0, sigma, n), median * 0.05))
    return np.stack(columns, axis=1)


def fit_sweep(rows: pd.DataFrame, seed: int = 0) -> Fit:
    """The fit of one implementation's rows over a size sweep (columns ``macs``, ``median_s``,
    ``iqr_s``, ``rounds``, ``rounds_s``)."""
    rows = rows.sort_values("macs")
    if rows["macs"].nunique() < 3:
        raise ValueError(f"rows: a fit needs at least 3 sizes, got {rows['macs'].nunique()}")
    macs = rows["macs"].astype(float).to_numpy()
    x = macs / macs.max()
    t = rows["median_s"].astype(float).to_numpy()
    t0, c, b = fit_power(x, t)
    rng = np.random.default_rng(seed)
    draws = [fit_power(x, t_draw)[2] for t_draw in _redraws(rows, rng, RESAMPLES)]
    low, high = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
    share = t0 / (t0 + c) if t0 + c > 0 else 1.0
    sizes = int(rows["macs"].nunique())
    if share >= FIXED_SHARE:
        verdict = "fixed term dominates"
    elif high - low > WIDE or sizes < MIN_SIZES:
        verdict = "uncertain"
    else:
        verdict = "scaling"
    return Fit(t0=t0, c=c, b=b, low=low, high=high, fixed_share=share, sizes=sizes, verdict=verdict)


def predict(fit: Fit, macs: np.ndarray, largest: float) -> np.ndarray:
    """The fitted time (seconds) at ``macs``, for a fit whose largest size had ``largest`` MACs."""
    return fit.t0 + fit.c * (np.asarray(macs, dtype=float) / largest) ** fit.b


def _size_sweep_key(rows: pd.DataFrame) -> bool:
    """Whether a family is the size-sweep preset's (its fit leads the report)."""
    first = rows.iloc[0]
    shapes = PRESETS["size-sweep"]["groups"][0]["shapes"]
    return any(all(int(first[f]) == s[f] for f in ("B", "C", "k", "m", "stride")) for s in shapes)


def scaling(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (size family, implementation, pass) with three or more sizes: the fit, its
    interval and verdict; the exponent left blank where the fixed term dominates. The size-sweep
    preset's families lead, then the families with the most sizes."""
    found = sorted(families(frame, "H", least=3), key=lambda g: not _size_sweep_key(g))
    out = []
    for family in found:
        for (impl, pass_), rows in labelled(family).groupby(["label", "pass"], sort=True):
            if rows["macs"].nunique() < 3:
                continue
            fit = fit_sweep(rows)
            shown = fit.verdict != "fixed term dominates"
            out.append({
                "family": family_title(family, "H"), "impl": impl, "pass": pass_,
                "sizes": ",".join(str(h) for h in sorted(rows["H"].unique())),
                "t0 ms": fit.t0 * 1e3, "fixed share at largest": fit.fixed_share,
                "b (time ~ MACs^b)": fit.b if shown else None,
                "b 95% interval": f"{fit.low:.2f} to {fit.high:.2f}" if shown else "",
                "verdict": fit.verdict,
            })
    return pd.DataFrame(out)
