"""Bring your own implementation: ``--plugin MODULE`` and the ``lrbench.implementations`` entry
points, with broken plugins giving a clear error or a ``failed``/``error`` row."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import pytest
from click.testing import CliRunner

from lrbench import registry
from lrbench.bench.results import records
from lrbench.cli import main

RUN = ["run", "--preset", "quick", "--kernel", "3", "--size", "5", "--channels", "4", "--m", "2",
       "--batch", "1", "--pass", "fwd", "--min-rounds", "1", "--max-time", "0.001"]

# A correct implementation under another name: unfold's function, registered by the plugin.
GOOD = """
    import torch
    import lrbench
    from lrbench.impls.unfold import local_relation_unfold

    def {name}(x, query, key, prior, kernel_size, stride, phi):
        return local_relation_unfold(x, query, key, prior, kernel_size, stride, phi)

    lrbench.register(lrbench.Implementation(
        name="{name}", fn={name}, summary="unfold under another name",
        devices=("cpu",), dtypes=(torch.float32, torch.float64)))
"""
# Implementations that register fine and then misbehave when called.
BROKEN_BODIES = {
    "wrong_shape": "return local_relation_unfold(x, query, key, prior, kernel_size, stride, phi)"
                   "[..., :-1]",
    "wrong_values": "return local_relation_unfold(x, query, key, prior, kernel_size, stride, phi)"
                    " * 1.01",
    "raises": "raise RuntimeError('kernel exploded')",
}
BROKEN = """
    import torch
    import lrbench
    from lrbench.impls.unfold import local_relation_unfold

    def {name}(x, query, key, prior, kernel_size, stride, phi):
        {body}

    IMPLEMENTATIONS = [lrbench.Implementation(
        name="{name}", fn={name}, summary="broken on purpose",
        devices=("cpu",), dtypes=(torch.float32, torch.float64))]
"""


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on ``sys.path`` for plugin modules; what they register is removed afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(registry.implementations())
    modules = set(sys.modules)
    yield tmp_path
    for name in set(registry.implementations()) - before:
        registry.unregister(name)
    for name in set(sys.modules) - modules:
        sys.modules.pop(name, None)


def write(folder, module, source):
    (folder / f"{module}.py").write_text(textwrap.dedent(source))


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_a_plugin_found_by_module_name_runs_like_ours(plugin_dir, tmp_path):
    write(plugin_dir, "lr_plugin_good", GOOD.format(name="mine"))
    listed = invoke("list", "--plugin", "lr_plugin_good")
    assert listed.exit_code == 0, listed.output
    assert "mine" in listed.output and "unfold under another name" in listed.output

    checked = invoke("check", "--plugin", "lr_plugin_good", "--impl", "mine")
    assert checked.exit_code == 0, checked.output
    assert "ok   mine" in checked.output

    out = tmp_path / "run"
    ran = invoke(*RUN, "--impl", "unfold,mine", "--plugin", "lr_plugin_good", "--out", str(out))
    assert ran.exit_code == 0, ran.output
    rows = records.load(out)
    mine = rows[rows["impl"] == "mine"]
    assert set(mine["target"]) == {"op", "layer"} and set(mine["status"]) == {"ok"}
    assert (mine["oracle"] == "reference float64").all()


def test_a_plugin_given_as_a_file_path(plugin_dir):
    write(plugin_dir, "lr_plugin_file", GOOD.format(name="mine_from_file"))
    result = invoke("list", "--plugin", str(plugin_dir / "lr_plugin_file.py"))
    assert result.exit_code == 0, result.output
    assert "mine_from_file" in result.output


@pytest.mark.parametrize("source,message", [
    ("import no_such_module_anywhere\n", "could not be imported: ModuleNotFoundError"),
    ("raise RuntimeError('plugin broke on import')\n", "plugin broke on import"),
    ("X = 1\n", "registered no implementation"),
    ("IMPLEMENTATIONS = 42\n", "expected a module, an Implementation"),
], ids=["import-error", "raises-on-import", "registers-nothing", "bad-IMPLEMENTATIONS"])
def test_a_plugin_that_cannot_load_is_a_usage_error(plugin_dir, source, message):
    module = "lr_plugin_" + str(abs(hash(source)))
    write(plugin_dir, module, source)
    for command in (["list"], ["check"], RUN):
        result = invoke(*command, "--plugin", module)
        assert result.exit_code == 2, result.output
        assert module in result.output and message in result.output


def test_a_missing_plugin_is_a_usage_error():
    result = invoke("list", "--plugin", "./no_such_plugin.py")
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_misbehaving_plugins_become_rows_and_the_run_goes_on(plugin_dir, tmp_path):
    for name, body in BROKEN_BODIES.items():
        write(plugin_dir, f"lr_plugin_{name}", BROKEN.format(name=name, body=body))
    plugins = [arg for name in BROKEN_BODIES for arg in ("--plugin", f"lr_plugin_{name}")]
    out = tmp_path / "run"
    result = invoke(*RUN, "--impl", "unfold," + ",".join(BROKEN_BODIES), *plugins,
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = records.load(out).set_index(["target", "impl"])
    assert rows.loc[("op", "unfold"), "status"] == "ok", rows.loc[("op", "unfold"), "reason"]
    assert rows.loc[("op", "wrong_shape"), "status"] == "failed"
    assert "shape (1, 4, 5, 4), expected (1, 4, 5, 5)" in rows.loc[("op", "wrong_shape"), "reason"]
    assert rows.loc[("op", "wrong_values"), "status"] == "failed"
    assert "y: max abs err" in rows.loc[("op", "wrong_values"), "reason"]
    assert rows.loc[("op", "raises"), "status"] == "error"
    assert "kernel exploded" in rows.loc[("op", "raises"), "reason"]

    checked = invoke("check", *plugins, "--impl", ",".join(BROKEN_BODIES))
    assert checked.exit_code == 1
    assert "FAIL wrong_shape" in checked.output and "FAIL raises" in checked.output
    assert "raised RuntimeError: kernel exploded" in checked.output


def _dist(folder, module, entry_points):
    """A minimal installed distribution in ``folder``: its dist-info and its entry points."""
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lrbench.implementations]\n" + entry_points)


def test_plugins_found_by_entry_point_and_broken_ones_listed(plugin_dir, monkeypatch):
    write(plugin_dir, "lr_ep_good", GOOD.format(name="from_entry_point"))
    write(plugin_dir, "lr_ep_quiet", "X = 1\n")
    _dist(plugin_dir, "lr_ep_demo", "good = lr_ep_good\nmissing = lr_ep_missing\n"
                                    "quiet = lr_ep_quiet\n")
    monkeypatch.setattr(registry, "PLUGIN_ERRORS", {})
    assert registry.load_entry_points() == ["from_entry_point"]
    assert registry.get("from_entry_point").summary == "unfold under another name"
    assert set(registry.PLUGIN_ERRORS) == {"entry point missing = lr_ep_missing",
                                           "entry point quiet = lr_ep_quiet"}
    assert "ModuleNotFoundError" in registry.PLUGIN_ERRORS["entry point missing = lr_ep_missing"]

    listed = invoke("list")
    assert listed.exit_code == 0, listed.output
    assert "from_entry_point" in listed.output
    assert "plugins that could not be loaded" in listed.output
    assert "entry point missing = lr_ep_missing: ModuleNotFoundError" in listed.output
    assert "entry point quiet = lr_ep_quiet: registered no implementation" in listed.output


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None, reason="submitit not installed")
def test_sharded_runs_load_the_plugin_in_each_shard_job(plugin_dir, tmp_path, monkeypatch):
    """``--executor local``: the shard runs in its own process, which loads the .py plugin again."""
    write(plugin_dir, "lr_plugin_sharded", GOOD.format(name="mine_sharded"))
    monkeypatch.chdir(plugin_dir)
    out = tmp_path / "sharded"
    result = invoke(*RUN, "--impl", "mine_sharded", "--plugin", "./lr_plugin_sharded.py",
                    "--executor", "local", "--nodes", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = records.load(out)
    mine = rows[rows["impl"] == "mine_sharded"]
    assert set(mine["target"]) == {"op", "layer"} and set(mine["status"]) == {"ok"}
