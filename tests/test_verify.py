"""``lrbench verify``: passes on the networks as specified, names the check that fails otherwise."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner
from torch import nn

from lrbench.cli import main
from lrbench.complexity.network import network_macs
from lrbench.complexity.verify import verify
from lrbench.models import CONFIGS, lrnet26, resnet50, zoo
from lrbench.models.network import parameter_count
from tests.impls import runnable_on_cpu


def test_verify_passes_and_writes_the_tables(tmp_path):
    report = verify(("resnet50", "lrnet26"), size=64, out_dir=tmp_path)
    assert report.ok, report.failures
    names = {p.name for p in report.files}
    assert {"summary.csv", "stages.csv", "lr_layers.csv", "gaps.csv", "verify.md"} <= names
    with (tmp_path / "summary.csv").open() as f:
        rows = {r["network"]: r for r in csv.DictReader(f)}
    assert int(rows["resnet50"]["params"]) == 25_557_032
    assert float(rows["lrnet26"]["GMACs fvcore"]) == network_macs(CONFIGS["lrnet26"], 64, 64) / 1e9
    with (tmp_path / "lr_layers.csv").open() as f:
        lr_rows = list(csv.DictReader(f))
    assert len(lr_rows) == 1 + sum(CONFIGS["lrnet26"].blocks)
    assert all(r["fvcore"] == r["closed form"] for r in lr_rows)
    md = (tmp_path / "verify.md").read_text()
    assert "| resnet50 | 25,557,032 |" in md and "All checks passed." in md


def _wider_3x3(model: nn.Module) -> nn.Module:
    model.layer1[0].conv2 = nn.Conv2d(64, 64, 5, padding=2, bias=False)  # 3x3 -> 5x5
    return model


def test_a_changed_resnet50_fails_the_parameter_and_fvcore_checks():
    model = _wider_3x3(resnet50())
    report = verify(("resnet50",), size=32, models={"resnet50": model}, out_dir=None,
                    flop_counter=False)
    assert not report.ok
    checks = " | ".join(report.failures)
    assert f"has {parameter_count(model):,} parameters, expected exactly 25,557,032" in checks
    assert "fvcore vs closed form: resnet50: fvcore" in checks
    assert "fvcore vs closed form: resnet50 stage res2" in checks


def test_a_changed_lr_layer_is_named():
    model = lrnet26(impl="unfold")
    model.layer2[1].conv2.final = nn.Conv2d(200, 200, 3, padding=1, bias=False)
    report = verify(("lrnet26",), size=32, models={"lrnet26": model}, out_dir=None,
                    flop_counter=False)
    assert any("LR layer layer2.1.conv2" in f for f in report.failures)


def test_an_unsupported_op_fails():
    model = lrnet26(impl="unfold")
    model.fc = nn.Sequential(nn.Hardtanh(), model.fc)  # aten::hardtanh has no counting rule
    report = verify(("lrnet26",), size=32, models={"lrnet26": model}, out_dir=None,
                    flop_counter=False)
    assert any(f.startswith("unsupported op: lrnet26: aten::hardtanh") for f in report.failures)


def test_cli_verify_exits_zero_and_prints_the_table(tmp_path):
    result = CliRunner().invoke(main, ["verify", "--network", "resnet26", "--size", "32",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| resnet26 | 15,995,176 |" in result.output
    assert "All checks passed." in result.output


def test_cli_verify_exits_nonzero_naming_the_check(tmp_path, monkeypatch):
    monkeypatch.setitem(zoo.NETWORKS, "resnet50", lambda: _wider_3x3(resnet50()))
    result = CliRunner().invoke(main, ["verify", "--network", "resnet50", "--size", "32",
                                       "--out", str(tmp_path), "--no-flop-counter"])
    assert result.exit_code == 1
    assert "FAILED params vs torchvision" in result.output
    assert "FAILED fvcore vs closed form" in result.output


def test_cli_verify_rejects_an_unknown_network():
    result = CliRunner().invoke(main, ["verify", "--network", "resnet18"])
    assert result.exit_code == 2
    assert "resnet18" in result.output


@pytest.mark.parametrize("impl", runnable_on_cpu(include_interpreted=False))
def test_every_traceable_implementation_gives_the_same_network_count(impl):
    report = verify(("lrnet26",), size=32, impl=impl, out_dir=None)
    assert report.ok, report.failures
    assert report.summary[0]["GMACs fvcore"] == network_macs(CONFIGS["lrnet26"], 32, 32) / 1e9
