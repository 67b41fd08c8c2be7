"""The report's "against the peers" section, from a planted CSV, and the peers preset's matrix."""

from __future__ import annotations

import pytest

from lrbench.bench.matrix.cases import Case, expand
from lrbench.bench.matrix.presets import get_preset
from lrbench.bench.results import records
from lrbench.bench.results.report import write_report
from lrbench.bench.sections.peers import against_the_peers

STAGE = {"B": 8, "C": 800, "H": 7, "W": 7, "k": 7, "m": 8, "stride": 1}
MIB = 2**20


def _row(target, impl, ms, *, compile="eager", pass_="fwd", status="ok", reason="", **shape):
    case = Case(target=target, impl=impl, dtype="float32", device="cpu", pass_=pass_,
                compile=compile, baseline="unfold" if target == "op" else "",
                **{**STAGE, **shape})
    row = {"case_id": case.case_id, **case.as_row(), "status": status, "reason": reason}
    if status == "ok":
        row.update(median_s=ms / 1e3, peak_bytes=ms * MIB, rounds=3,
                   compile_s=30.0 if case.compiled else None)
    return row


@pytest.fixture
def run_dir(tmp_path):
    rows = [
        _row("op", "unfold", 40.0), _row("op", "fused_cpu", 2.0), _row("op", "fused_cpu", 8.0,
                                                                           pass_="fwd_bwd"),
        _row("op", "unfold", 30.0, compile="inductor"),
        _row("op", "reference", 50.0, compile="inductor"),
        _row("op", "flex_attention", 100.0, compile="inductor"),
        _row("op", "flex_attention", None, compile="inductor", pass_="fwd_bwd", status="skipped",
             reason="FlexAttention has no backward on CPU in torch X (inference only)"),
        _row("natten", "natten", None, status="skipped", reason="natten is not installed"),
        _row("conv3x3", "torch", 1.0, C=512, k=3, m=1),
        _row("op", "reference", 999.0),  # the oracle, eager: neither ours nor a peer
    ]
    for row in rows:
        records.append_row(tmp_path / "results.csv", row)
    return tmp_path


def test_each_peer_beside_our_best_on_the_same_stage(run_dir):
    table = against_the_peers(records.load(run_dir)).set_index(["pass", "peer"])
    fwd = table.loc["fwd"]
    assert set(fwd.index) == {"unfold@inductor", "reference@inductor", "flex_attention@inductor",
                              "natten", "conv3x3"}
    assert (fwd["ours"] == "fused_cpu").all() and (fwd["ours ms"] == 2.0).all()
    assert fwd.loc["flex_attention@inductor", "our speedup"] == pytest.approx(50.0)
    assert fwd.loc["unfold@inductor", "our speedup"] == pytest.approx(15.0)
    assert fwd.loc["conv3x3", "our speedup"] == pytest.approx(0.5)
    assert fwd.loc["flex_attention@inductor", "peer peak MiB"] == pytest.approx(100.0)
    assert fwd.loc["unfold@inductor", "compile s"] == 30.0
    assert "padded" in fwd.loc["flex_attention@inductor", "note"]
    assert fwd.loc["natten", "note"] == "natten is not installed"
    flex_bwd = table.loc[("fwd_bwd", "flex_attention@inductor")]
    assert flex_bwd["ours ms"] == 8.0 and "no backward on CPU" in flex_bwd["note"]


def test_the_report_has_the_section(run_dir):
    text = write_report(run_dir).read_text()
    section = text.split("## Against the peers", 1)[1].split("\n## ", 1)[0]
    assert "| B8-C800-7x7-k7-m8-s1 | float32 | cpu | fwd | flex_attention@inductor | 100 |" in section
    assert "| 2 | 2 | 50 |" in section  # ours ms, ours peak MiB, our speedup
    assert "| natten |" in section and "natten is not installed" in section


def test_no_peers_no_section(tmp_path):
    records.append_row(tmp_path / "results.csv", _row("op", "fused_cpu", 2.0))
    assert "Against the peers" not in write_report(tmp_path).read_text()


def test_the_peers_preset_covers_the_four_stages_and_every_peer():
    cases = expand(get_preset("peers"))
    stages = {(c.C, c.H) for c in cases if c.target == "op"}
    assert stages == {(100, 56), (200, 28), (400, 14), (800, 7)}
    cpu = {c.impl_label for c in cases if c.device == "cpu" and c.target == "op"}
    assert cpu == {"unfold", "fused_cpu", "unfold@inductor", "reference@inductor",
                   "flex_attention@inductor"}
    cuda = {(c.impl_label, c.dtype) for c in cases if c.device == "cuda" and c.target == "op"}
    assert ("fused_triton", "bfloat16") in cuda and ("flex_attention@inductor", "float32") in cuda
    assert {c.target for c in cases} == {"op", "natten", "conv3x3"}
    assert {c.pass_ for c in cases} == {"fwd", "fwd_bwd"}
    assert all(c.device == "cuda" for c in cases if c.target == "natten")
