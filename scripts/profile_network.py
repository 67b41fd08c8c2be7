"""Where a network's forward spends its time: CPU time per kind of module, one thread.

    python scripts/profile_network.py lrnet50 [--channels-last] [--plain] [--batch 8] [--size 224]

Each leaf module's forward is timed with the thread's CPU time (``time.thread_time``) on one
intra-op thread, so that other processes on a shared machine count less than in wall-clock
time; the op itself (``lrbench.layer.local_relation``) is timed apart. The best of three forwards
is printed, as per cent of the forward, by kind (stem modules apart). ``--plain`` turns LR-Net's
fast path off (:func:`lrbench.models.set_fast_path`). With the fast path on, the key/query
projections and the stem's folded conv are no module calls: their time shows in ``other``.
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from torch import nn

import lrbench.layer
from lrbench import models


def _kind(name: str, module: nn.Module) -> str:
    prefix = "stem " if name.startswith("conv1") else ""
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0]
        part = name.split(".")[-1]
        role = f" {part}" if part in ("key", "query", "final") else ""
        return f"{prefix}conv{k}x{k}{role}"
    return prefix + type(module).__name__


def profile(name: str, batch: int, size: int, channels_last: bool, plain: bool) -> list[str]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = models.build(name, **({"impl": "fused_cpu"} if name.startswith("lr") else {}))
    models.set_fast_path(model, not plain)
    images = torch.randn(batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    model.eval()
    spent: dict[str, float] = collections.defaultdict(float)
    started: dict[int, float] = {}
    for module_name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        kind = _kind(module_name, module)
        module.register_forward_pre_hook(
            lambda mod, args: started.__setitem__(id(mod), time.thread_time()))
        module.register_forward_hook(
            lambda mod, args, out, kind=kind: spent.__setitem__(
                kind, spent[kind] + time.thread_time() - started[id(mod)]))
    op = lrbench.layer.local_relation

    def timed_op(x, *args, **kwargs):
        start = time.thread_time()
        y = op(x, *args, **kwargs)
        kind = "stem op" if x.shape[1] == 64 else "op"
        spent[kind] += time.thread_time() - start
        return y

    lrbench.layer.local_relation = timed_op
    best: dict[str, float] | None = None
    try:
        with torch.no_grad():
            model(images)  # warm-up
            for _ in range(3):
                spent.clear()
                start = time.thread_time()
                model(images)
                total = time.thread_time() - start
                if best is None or total < best["TOTAL"]:
                    best = {**spent, "TOTAL": total}
    finally:
        lrbench.layer.local_relation = op
    total = best.pop("TOTAL")
    best["other"] = total - sum(best.values())
    layout = "channels_last" if channels_last else "contiguous"
    lines = [f"{name} forward, B={batch}, {size}x{size}, {layout}, fast path "
             f"{'off' if plain else 'on'}: {total * 1e3:.0f} ms CPU time (1 thread)"]
    for kind, seconds in sorted(best.items(), key=lambda item: -item[1]):
        lines.append(f"  {100 * seconds / total:5.1f}%  {seconds * 1e3:8.1f} ms  {kind}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", choices=list(models.NETWORKS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--plain", action="store_true", help="LR-Net's fast path off")
    args = parser.parse_args()
    print("\n".join(profile(args.network, args.batch, args.size, args.channels_last, args.plain)))


if __name__ == "__main__":
    main()
