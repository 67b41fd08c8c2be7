"""A plugin implementation that waits at the tests' file gate: how a test holds a run inside a
case (in this process, a shard job's or a Slurm job's), then lets it go on.

``waiting`` is lrbench's unfold behind :class:`tests.helpers.FileGate`; the gate's folder comes
from the environment (``LRBENCH_TEST_GATE``), which submitit's jobs and Slurm's inherit. Unarmed,
it is plain unfold.
"""

import os
from pathlib import Path

import torch
from lrbench.impls.unfold import local_relation_unfold

import lrbench
from tests.helpers import GATE_ENV, FileGate


def waiting_unfold(x, query, key, prior, kernel_size, stride, phi):
    # x (B, C, H, W), query (B, G, Ho, Wo), key (B, G, H, W), prior (G, k, k) -> (B, C, Ho, Wo)
    if os.environ.get(GATE_ENV):
        FileGate(Path(os.environ[GATE_ENV])).enter()
    return local_relation_unfold(x, query, key, prior, kernel_size, stride, phi)


# registered by lrbench.load_plugin (a shard job's --plugin); tests in this process use
# registry.registered(WAITING)
IMPLEMENTATIONS = WAITING = lrbench.Implementation(
    name="waiting", fn=waiting_unfold, summary="unfold, after waiting at the tests' file gate",
    devices=("cpu",), dtypes=(torch.float32, torch.float64))
