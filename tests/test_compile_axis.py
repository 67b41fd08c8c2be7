"""The compile axis: op cases timed eager and through torch.compile (inductor), gated as compiled,
their first call in ``compile_s`` and never in the median; a compile failure is an ``error`` row.

One small matrix is run once, in one test (each compiled case compiles from scratch)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from lrbench.impls.unfold import local_relation_unfold

from lrbench import registry
from lrbench.bench.matrix.cases import Case, expand
from lrbench.bench.matrix.presets import get_preset
from lrbench.bench.measure import compiling, targets
from lrbench.bench.measure.runner import Timing, run_matrix
from lrbench.bench.results import records
from tests.helpers import plant_medians

TINY = {"B": 1, "C": 4, "H": 5, "W": 5, "k": 3, "m": 2, "stride": 1}


def _wrong_when_compiled(x, query, key, prior, kernel_size, stride, phi):
    y = local_relation_unfold(x, query, key, prior, kernel_size, stride, phi)
    return y * 1.01 if torch.compiler.is_compiling() else y  # right eagerly, wrong compiled


SHIFTY = registry.Implementation(name="shifty_for_test", fn=_wrong_when_compiled,
                                 summary="wrong only when compiled", devices=("cpu",),
                                 dtypes=(torch.float32, torch.float64))


def _cases(impls, passes, modes=("eager", "inductor")):
    return [Case(target="op", impl=impl, dtype="float32", device="cpu", pass_=pass_,
                 compile=mode, baseline="unfold", **TINY)
            for impl in impls for pass_ in passes for mode in modes]


# Planted medians (the cases are still timed; their real medians go to MEASURED): eager unfold
# 4 ms, compiled 1 ms, so the compiled rows' speedup over eager unfold is exactly 4.
PLANTED = {("unfold", "eager"): 0.004, ("unfold", "inductor"): 0.001, "shifty_for_test": 0.002}
MEASURED: dict[str, float] = {}


def _run_rows(out):
    cases = _cases(["unfold"], ["fwd", "fwd_bwd"]) + _cases(["shifty_for_test"], ["fwd"])
    with registry.registered(SHIFTY), pytest.MonkeyPatch.context() as monkeypatch:
        plant_medians(monkeypatch, PLANTED, MEASURED)
        run_matrix(cases, out, timing=Timing(min_rounds=3, max_time=0.01))
    return records.load(out).set_index("case_id")


def test_expand_gives_op_cases_in_both_modes_and_the_rest_eager():
    cases = expand(get_preset("quick"), {"impl": ["unfold"], "kernel": [3], "size": [8],
                                         "compile": ["eager", "inductor"]})
    modes = {(case.target, case.compile) for case in cases}
    assert modes == {("op", "eager"), ("op", "inductor"), ("layer", "eager"), ("conv3x3", "eager")}
    ids = [case.case_id for case in cases if case.target == "op" and case.compiled]
    assert ids and all(":unfold@inductor:" in cid for cid in ids)


def test_one_matrix_with_compiled_cases(tmp_path):
    """The matrix's compiles are most of this file's time, so one test runs it and checks it (a
    module fixture runs once on each pytest-xdist worker that gets one of its tests)."""
    rows = _run_rows(tmp_path)
    _compiled_rows_are_timed_with_their_compile_time_apart(rows)
    _the_gate_checks_the_compiled_callable(rows)
    _the_compiled_variant_leaves_the_registry_after_the_run()


def _compiled_rows_are_timed_with_their_compile_time_apart(rows):
    for pass_ in ("fwd", "fwd_bwd"):
        eager = rows.loc[f"op:unfold:B1-C4-5x5-k3-m2-s1:float32:cpu:{pass_}"]
        compiled = rows.loc[f"op:unfold@inductor:B1-C4-5x5-k3-m2-s1:float32:cpu:{pass_}"]
        assert (eager["status"], compiled["status"]) == ("ok", "ok")
        assert compiled["compile"] == "inductor" and eager["compile"] == "eager"
        assert pd.isna(eager["compile_s"])
        # Compiling takes seconds; a call of the compiled 5x5 op, well under them: the first
        # call went into compile_s, not into the (measured) median.
        assert compiled["compile_s"] > 10 * MEASURED[compiled.name]
        assert compiled["oracle"] == "reference float64" and compiled["max_abs_err"] < 1e-5
        # against eager unfold on the same case (4 ms), not against itself (1 ms)
        assert compiled["baseline"] == "unfold"
        assert compiled["speedup_vs_baseline"] == pytest.approx(4.0, rel=1e-12)
        assert eager["speedup_vs_baseline"] == pytest.approx(1.0, rel=1e-12)


def _the_gate_checks_the_compiled_callable(rows):
    eager = rows.loc["op:shifty_for_test:B1-C4-5x5-k3-m2-s1:float32:cpu:fwd"]
    compiled = rows.loc["op:shifty_for_test@inductor:B1-C4-5x5-k3-m2-s1:float32:cpu:fwd"]
    assert eager["status"] == "ok"
    assert compiled["status"] == "failed" and "y: max abs err" in compiled["reason"]


def _the_compiled_variant_leaves_the_registry_after_the_run():
    assert not [name for name in registry.implementations() if "@" in name]


def test_a_compile_failure_is_an_error_row_and_the_run_goes_on(tmp_path, monkeypatch):
    def failing_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("inductor failed to lower this graph (forced)")
        return run

    monkeypatch.setattr(compiling, "_VARIANTS", {})
    monkeypatch.setattr(torch, "compile", failing_compile)
    run_matrix(_cases(["unfold"], ["fwd"]), tmp_path, timing=Timing(min_rounds=1, max_time=0.001))
    rows = records.load(tmp_path).set_index("case_id")
    compiled = rows.loc["op:unfold@inductor:B1-C4-5x5-k3-m2-s1:float32:cpu:fwd"]
    assert compiled["status"] == "error"
    assert "inductor failed to lower this graph (forced)" in compiled["reason"]
    assert rows.loc["op:unfold:B1-C4-5x5-k3-m2-s1:float32:cpu:fwd", "status"] == "ok"


def test_torch_compile_raising_is_an_error_row(tmp_path, monkeypatch):
    def refusing_compile(fn, **kwargs):
        raise RuntimeError("torch.compile is not supported here (forced)")

    monkeypatch.setattr(compiling, "_VARIANTS", {})
    monkeypatch.setattr(torch, "compile", refusing_compile)
    run_matrix(_cases(["unfold"], ["fwd"], ["inductor"]), tmp_path,
               timing=Timing(min_rounds=1, max_time=0.001))
    (row,) = records.load(tmp_path).to_dict("records")
    assert row["status"] == "error" and row["reason"].startswith("torch.compile: RuntimeError")


@pytest.mark.parametrize("impl,dtype,needle", [
    ("flex_attention", "float64", "compiled FlexAttention on CPU takes float32"),
    ("fused_triton", "float32", "cannot compile"),
])
def test_implementations_that_cannot_be_compiled_say_why(impl, dtype, needle):
    case = Case(target="op", impl=impl, dtype=dtype, device="cpu", pass_="fwd", compile="inductor",
                **TINY)
    eager = Case(**{**case.__dict__, "compile": "eager"})
    if registry.get(impl).why_not(case.shape.spec(dtype=case.torch_dtype)):
        pytest.skip(f"{impl} cannot run here at all")
    assert targets.why_not(eager) == []
    assert any(needle in reason for reason in targets.why_not(case))
