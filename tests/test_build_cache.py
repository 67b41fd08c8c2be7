"""The build cache of C++ extensions (lrbench.buildcache): one folder per set of build inputs.

What it must guarantee: a .so built against one torch is never loaded by another; a stale torch
``lock`` file (left by a killed build, or by torch 2.14 for torch 2.11 to hang on) never blocks a
build; a lock held too long ends in an error naming the folder; two checkouts of the same source
share one build. Only the last test builds (once per session, shared with the fused_cpu tests).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lrbench.impls import fused_cpu
from torch.utils.file_baton import FileBaton

from lrbench import buildcache, registry
from lrbench.buildcache import ExtensionSpec

SPEC = fused_cpu.SPEC


def test_two_torch_versions_never_share_a_folder(monkeypatch, tmp_path):
    ours = buildcache.build_folder(SPEC, tmp_path)
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    monkeypatch.setattr(torch.version, "git_version", "0" * 40)
    other = buildcache.build_folder(SPEC, tmp_path)
    assert ours != other
    assert "torch2.11.0+cu130" in other.name and "torch2.11.0" not in ours.name
    # the same version string from another git revision (a nightly, a local build) differs too
    monkeypatch.setattr(torch, "__version__", ours.name.split("-torch")[1].split("-py")[0])
    assert buildcache.build_folder(SPEC, tmp_path) not in (ours, other)


def test_folder_follows_content_and_flags_not_the_source_path(tmp_path):
    copy = tmp_path / "elsewhere" / "fused_cpu.cpp"
    copy.parent.mkdir()
    shutil.copy(SPEC.source, copy)
    same = ExtensionSpec(SPEC.name, copy, SPEC.cflags, SPEC.ldflags)
    assert buildcache.build_folder(same, tmp_path) == buildcache.build_folder(SPEC, tmp_path)
    flags = ExtensionSpec(SPEC.name, copy, SPEC.cflags + ("-DNDEBUG",), SPEC.ldflags)
    assert buildcache.build_folder(flags, tmp_path) != buildcache.build_folder(SPEC, tmp_path)
    copy.write_text(copy.read_text() + "\n// edited\n")
    assert buildcache.build_folder(same, tmp_path) != buildcache.build_folder(SPEC, tmp_path)


def test_stale_torch_lock_is_removed_while_we_hold_ours(tmp_path):
    stale = tmp_path / "lock"
    stale.touch()  # what a build killed under torch 2.11 leaves behind
    with buildcache.build_lock(tmp_path, timeout_s=1):
        assert not stale.exists()
        # torch 2.11's FileBaton (create-exclusive, then wait for the file to vanish) now proceeds
        baton = FileBaton(str(stale))
        assert baton.try_acquire()
        baton.release()


def test_lock_held_too_long_ends_in_a_clear_error(tmp_path, monkeypatch):
    tmp_path.joinpath(buildcache.LOCK_NAME).write_text("12345")
    with open(tmp_path / buildcache.LOCK_NAME) as holder:  # another process's build, as flock sees it
        fcntl.flock(holder, fcntl.LOCK_EX)
        monkeypatch.setenv(buildcache.TIMEOUT_ENV, "0.3")
        start = time.monotonic()
        with pytest.raises(RuntimeError) as err, buildcache.build_lock(tmp_path):
            pass
        assert time.monotonic() - start < 5
    message = str(err.value)
    assert str(tmp_path) in message and "delete the folder" in message
    assert "12345" in message and buildcache.TIMEOUT_ENV in message
    with buildcache.build_lock(tmp_path, timeout_s=0.3):  # released: acquired at once
        pass


def test_bad_timeout_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(buildcache.TIMEOUT_ENV, "ten minutes")
    with pytest.raises(ValueError, match=buildcache.TIMEOUT_ENV), buildcache.build_lock(tmp_path):
        pass


REASON = registry.get("fused_cpu").unavailable_reason()


@pytest.mark.skipif(REASON is not None, reason=f"fused_cpu unavailable: {REASON}")
def test_second_checkout_reuses_the_build(tmp_path):
    module = fused_cpu.extension()  # builds once per session if needed
    folder = buildcache.build_folder(SPEC)
    so = Path(module.__file__)
    assert so.parent == folder
    before = (so.stat().st_mtime_ns, (folder / ".ninja_log").read_text())
    (folder / "lock").touch()  # and a stale torch lock on the way
    checkout = tmp_path / "checkout2" / "csrc" / "fused_cpu.cpp"
    checkout.parent.mkdir(parents=True)
    shutil.copy(SPEC.source, checkout)
    code = (
        "import sys; from pathlib import Path; from lrbench import buildcache\n"
        "from lrbench.buildcache import ExtensionSpec\n"
        f"spec = ExtensionSpec('fused_cpu', Path({str(checkout)!r}), {SPEC.cflags!r}, {SPEC.ldflags!r})\n"
        "print(buildcache.load(spec).__file__)\n"
    )
    env = dict(os.environ, **{buildcache.TIMEOUT_ENV: "60"})
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == so
    assert (so.stat().st_mtime_ns, (folder / ".ninja_log").read_text()) == before  # nothing rebuilt
