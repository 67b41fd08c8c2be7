"""Scaling fits: a planted law is recovered with its interval; a fit that the fixed term dominates
is flagged, never printed as an exponent; the size-sweep preset's fit leads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lrbench.bench.results import fits
from tests.helpers import planted_row


def _sweep(t0_ms: float, c_ms: float, b: float, sizes=(8, 16, 32, 64), impl="unfold",
           spread=0.02, **shape) -> pd.DataFrame:
    rows = [planted_row("op", impl, 1.0, H=h, W=h, seed=h, spread=spread, **shape)
            for h in sizes]
    frame = pd.DataFrame(rows)
    macs = frame["macs"].astype(float)
    noise = frame["median_s"] / 1e-3  # the planted rounds' scatter around 1 ms
    frame["median_s"] = (t0_ms + c_ms * (macs / macs.max()) ** b) / 1e3 * noise
    frame["rounds_s"] = ""  # the medians moved: the quartile columns stand for the spread
    frame["iqr_s"] = frame["median_s"] * spread
    return frame


def test_a_planted_power_law_is_recovered_inside_its_interval():
    fit = fits.fit_sweep(_sweep(0.0, 10.0, 1.5, spread=0.01))
    assert fit.verdict == "scaling" and fit.low <= 1.5 <= fit.high
    assert fit.b == pytest.approx(1.5, abs=0.05) and fit.high - fit.low < 0.2


def test_a_fixed_term_is_separated_from_the_scaling():
    fit = fits.fit_sweep(_sweep(0.5, 10.0, 1.0, spread=0.005))
    assert fit.b == pytest.approx(1.0, abs=0.1) and fit.t0 == pytest.approx(5e-4, rel=0.2)
    assert fit.verdict == "scaling" and fit.fixed_share < 0.1


def test_an_overhead_dominated_fit_is_flagged_not_printed_as_an_exponent():
    frame = _sweep(5.0, 1.0, 1.0, sizes=(8, 12, 16, 24))
    fit = fits.fit_sweep(frame)
    assert fit.verdict == "fixed term dominates" and fit.fixed_share >= fits.FIXED_SHARE
    table = fits.scaling(frame)
    assert table["verdict"].tolist() == ["fixed term dominates"]
    assert table["b (time ~ MACs^b)"].isna().all() and table["b 95% interval"].eq("").all()


def test_three_sizes_fit_but_are_uncertain_and_two_are_refused():
    assert fits.fit_sweep(_sweep(0.0, 10.0, 1.0, sizes=(8, 16, 32))).verdict == "uncertain"
    with pytest.raises(ValueError, match="rows: a fit needs at least 3 sizes"):
        fits.fit_sweep(_sweep(0.0, 10.0, 1.0, sizes=(8, 16)))


def test_the_size_sweep_presets_family_leads():
    other = _sweep(0.0, 10.0, 1.0, sizes=(8, 12, 16, 24, 32, 48))  # more sizes
    preset = _sweep(0.0, 10.0, 1.0, sizes=(14, 28, 56, 112), B=4, C=100)
    table = fits.scaling(pd.concat([other, preset], ignore_index=True))
    assert table["family"].iloc[0].startswith("B=4, C=100") and len(table) == 2


def test_predict_goes_through_the_fitted_curve():
    frame = _sweep(0.2, 5.0, 1.0, spread=0.001)
    fit = fits.fit_sweep(frame)
    macs = frame["macs"].astype(float).to_numpy()
    predicted = fits.predict(fit, macs, macs.max())
    assert np.allclose(predicted, frame["median_s"], rtol=0.02)
