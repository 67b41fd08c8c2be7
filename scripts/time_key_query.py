"""The fast path's key/query projections, one way against another, in one process: the projections
alone and the whole ``LocalRelation2d`` (fused_cpu), forward and forward+backward.

    python scripts/time_key_query.py [--threads 1] [--rounds 9] [--shapes stem,res3.0]
                                     [--old convs|key_query|node] [--new convs|key_query|node]
    python scripts/time_key_query.py --network [--rounds 3] [--old ...] [--new ...]

At every LR layer shape of LR-Net-50 at 224x224, batch 8, k=7, m=8 (Hu et al., ICCV 2019,
arXiv:1904.11491, Table 1), float32, NCHW and channels_last. The ways: ``convs``, the projections
as convolutions with their autograd backward (the fast path before :mod:`lrbench.projections`);
``key_query``, :func:`lrbench.projections.key_query` and the op as two autograd nodes (before
:func:`lrbench.projections.projected_relation`); ``node``, the layer's own fast path (one node,
the x gradient written once). Default: ``--old key_query --new node``. Rounds alternate old, new,
so that a shared machine's noise falls on both alike. Each cell: median ms; the last columns:
new / old forward+backward with its 95% bootstrap interval. "proj" rows (``convs`` against
``key_query`` only) time the projections alone, their backward fed the op's contiguous gradients of
key and query. ``--network``: LR-Net-50's training step (forward, backward, no optimizer;
fused_cpu) with every layer one way or the other.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch
import torch.nn.functional as F
from time_fused_cpu import SHAPES  # LR-Net-50's LR layers: (C, H = W, stride); this folder

from lrbench.bench.results.stats import ratio_interval
from lrbench.layer import LocalRelation2d
from lrbench.models import lrnet50

BATCH = 8


def old_key_query(self, x):
    """The fast path as it was: one conv for both at stride 1, split; else two convs."""
    G, s = self.groups, self.stride
    if s == 1:
        weight = torch.cat([self.key.weight, self.query.weight])  # (2G, C, 1, 1)
        return F.conv2d(x, weight).split(G, dim=1)  # (B, G, H, W) each
    if x.is_contiguous():
        return self.key(x), F.conv2d(x[:, :, ::s, ::s], self.query.weight)
    return self.key(x), self.query(x)


WAYS = ("convs", "key_query", "node")


def forward_by(way: str):
    """``LocalRelation2d.forward`` of one way (``node``: the layer's own)."""
    if way == "node":
        return LocalRelation2d.forward

    def two_nodes(self, x):
        key, query = old_key_query(self, x) if way == "convs" else self.key_query(x)
        prior = self.prior_logits().to(x.dtype)
        return self.final(self.op(x, query, key, prior, kernel_size=self.kernel_size,
                                  stride=self.stride, phi=self.phi, impl=self.impl))

    return two_nodes


def _interleaved(calls: dict, rounds: int) -> dict[str, list[float]]:
    times = {name: [] for name in calls}
    for fn in calls.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def case(name: str, channels_last: bool, rounds: int, ways: dict[str, str]) -> list[str]:
    C, H, s = SHAPES[name]
    torch.manual_seed(0)
    layer = LocalRelation2d(C, 7, stride=s, m=8, impl="fused_cpu")
    x = torch.randn(BATCH, C, H, H)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    key, query = layer.key_query(x)
    grad_key, grad_query = torch.randn_like(key), torch.randn_like(query)  # contiguous, as the op's
    projections = {"convs": types.MethodType(old_key_query, layer), "key_query": layer.key_query}

    def proj(way, grad):
        def run():
            with torch.set_grad_enabled(grad):
                outs = projections[way](x)
            if grad:
                torch.autograd.backward(outs, (grad_key, grad_query))
                x.grad = None
                layer.zero_grad(set_to_none=True)

        return run

    def whole(way, grad):
        forward = types.MethodType(forward_by(way), layer)

        def run():
            with torch.set_grad_enabled(grad):
                y = forward(x)
                if grad:
                    y.backward(torch.ones_like(y))
                    x.grad = None
                    layer.zero_grad(set_to_none=True)

        return run

    rows = []
    parts = (("layer", whole),) if "node" in ways.values() else (("proj", proj), ("layer", whole))
    for part, make in parts:
        fwd = _interleaved({side: make(way, False) for side, way in ways.items()}, rounds)
        both = _interleaved({side: make(way, True) for side, way in ways.items()}, rounds)
        med = {(p, w): statistics.median(t[w]) * 1e3 for p, t in (("f", fwd), ("fb", both)) for w in ways}
        low, high = ratio_interval(both["old"], both["new"])
        rows.append(
            f"| {name} | {C} | {H} | {s} | {'channels_last' if channels_last else 'NCHW'} "
            f"| {part} | {med['f', 'old']:.1f} | {med['f', 'new']:.1f} "
            f"| {med['fb', 'old']:.1f} | {med['fb', 'new']:.1f} "
            f"| {med['fb', 'new'] / med['fb', 'old']:.2f} | {low:.2f}-{high:.2f} |"
        )
    return rows


def network(channels_last: bool, rounds: int, ways: dict[str, str]) -> str:
    torch.manual_seed(0)
    model = lrnet50(impl="fused_cpu").train()
    x = torch.randn(BATCH, 3, 224, 224)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    layers = [mod for mod in model.modules() if isinstance(mod, LocalRelation2d)]

    def step(way):
        def run():
            for layer in layers:
                layer.forward = types.MethodType(forward_by(way), layer)
            model(x).sum().backward()
            model.zero_grad(set_to_none=True)
        return run

    times = _interleaved({side: step(way) for side, way in ways.items()}, rounds)
    for layer in layers:
        layer.__dict__.pop("forward", None)
    old, new = (statistics.median(times[w]) * 1e3 for w in ("old", "new"))
    low, high = ratio_interval(times["old"], times["new"])
    fmt = "channels_last" if channels_last else "NCHW"
    return f"| lrnet50 train step | {fmt} | {old:.0f} | {new:.0f} | {new / old:.3f} | {low:.3f}-{high:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--network", action="store_true", help="LR-Net-50's training step instead")
    parser.add_argument("--old", choices=WAYS, default="key_query")
    parser.add_argument("--new", choices=WAYS, default="node")
    args = parser.parse_args()
    ways = {"old": args.old, "new": args.new}
    torch.set_num_threads(args.threads)
    if args.network:
        print(f"torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}, 224x224, "
              f"{args.rounds} interleaved rounds; ms (median); old {args.old}, new {args.new}")
        print("| case | format | old | new | new/old | 95% CI |")
        print("|---|---|---|---|---|---|")
        for channels_last in (False, True):
            print(network(channels_last, args.rounds, ways), flush=True)
        return
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}, float32, "
        f"{args.rounds} interleaved rounds; ms (median); old {args.old}, new {args.new}"
    )
    print(
        "| layer | C | H=W | s | format | timed | old fwd | new fwd | old fwd+bwd | new fwd+bwd "
        "| new/old fwd+bwd | 95% CI |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.shapes.split(","):
        for channels_last in (False, True):
            for row in case(name, channels_last, args.rounds, ways):
                print(row, flush=True)


if __name__ == "__main__":
    main()
