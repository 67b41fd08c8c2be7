"""The report's "against the peers" table: per stage, each peer's time and memory, and our best
implementation's speedup over it.

Ours: the op's own implementations run as written (``unfold``, ``im2col_matmul``, ``fused_cpu``,
``fused_triton``, a plugin's); our best is the fastest of them on the same stage (B, H, W),
dtype, device and pass. Peers: what a user would otherwise reach for: any implementation
compiled with ``torch.compile`` (``unfold@inductor``), ``flex_attention``, NATTEN and the 3x3
convolution the layer replaces. A peer that was not timed is listed with its reason.
"""

from __future__ import annotations

import pandas as pd

from lrbench.bench.results.metrics import impl_of, shape_of

MIB = 2**20
STAGE = ["B", "H", "W", "dtype", "device", "pass", "memory_format"]  # rows of one stage
PEER_IMPLS = ("flex_attention",)  # registered implementations that are peers, not ours
NOT_OURS = ("reference",)  # the oracle: neither ours to race nor a peer
NOTES = {
    "flex_attention": "same op; q/k head 2 channels and values m, padded on CUDA to 16 and "
                      "max(16, next pow2 of m); C padded to G*m",
    "natten": "different op: clamped windows, no prior, q.k over head dim 32; heads = G",
    "conv3x3": "3x3 conv, C={C} -> {C} (the peers preset: ResNet-50's width at the stage)",
}


def _label(row: pd.Series) -> str:
    return "conv3x3" if row["target"] == "conv3x3" else impl_of(row["case_id"])


def _is_ours(row: pd.Series) -> bool:
    return (row["target"] == "op" and "@" not in row["label"]
            and row["impl"] not in PEER_IMPLS + NOT_OURS)


def _is_peer(row: pd.Series) -> bool:
    if row["target"] in ("natten", "conv3x3"):
        return True
    return row["target"] == "op" and ("@" in row["label"] or row["impl"] in PEER_IMPLS)


def _note(label: str, C: int) -> str:
    base, _, mode = label.partition("@")
    note = NOTES.get(base, "").format(C=C)
    if mode:
        note = "; ".join(filter(None, [f"torch.compile ({mode})", note]))
    return note


def against_the_peers(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (stage, dtype, device, pass, peer) where our best was timed."""
    if frame.empty:
        return pd.DataFrame()
    rows = frame.assign(label=frame.apply(_label, axis=1))
    ours = rows[(rows["status"] == "ok") & rows.apply(_is_ours, axis=1)]
    peers = rows[rows.apply(_is_peer, axis=1)]
    if ours.empty or peers.empty:
        return pd.DataFrame()
    best = ours.loc[ours.groupby(STAGE, sort=False)["median_s"].idxmin()]
    paired = peers.merge(best, on=STAGE, suffixes=("", "_ours"))
    timed = paired["status"] == "ok"
    return pd.DataFrame({
        "stage": paired["case_id_ours"].map(shape_of), "dtype": paired["dtype"],
        "device": paired["device"], "pass": paired["pass"], "peer": paired["label"],
        "peer ms": (paired["median_s"] * 1e3).where(timed),
        "peer peak MiB": (paired["peak_bytes"] / MIB).where(timed),
        "compile s": paired["compile_s"],
        "ours": paired["label_ours"], "ours ms": paired["median_s_ours"] * 1e3,
        "ours peak MiB": paired["peak_bytes_ours"] / MIB,
        "our speedup": (paired["median_s"] / paired["median_s_ours"]).where(timed),
        "note": [reason[:90] if not ok else _note(label, int(C)) for ok, reason, label, C
                 in zip(timed, paired["reason"], paired["label"], paired["C"], strict=True)],
    })
