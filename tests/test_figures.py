"""Every plot the report draws: one colour per implementation across all of them (read from the
figures' artists), the spread on time plots, speedup intervals, captions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer, ErrorbarContainer

from lrbench.bench.comparison.ratios import ratio
from lrbench.bench.figures import canvas, palette
from lrbench.bench.figures.network import PANEL, network_rows, networks
from lrbench.bench.figures.rows import provenance, quartiles
from lrbench.bench.figures.spread import BOOTSTRAP, IQR, speedup
from lrbench.bench.figures.sweeps import time_vs_k
from lrbench.bench.results import plots, records, stats
from tests.helpers import PLUGIN, planted_row, planted_run

NAMES = ["unfold", "fused_cpu", PLUGIN, "conv3x3", "floor", "resnet50"]


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    return planted_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def figures(frame):
    drawn = {name: figure(frame) for name, figure in plots.FIGURES.items()}
    assert all(fig is not None for fig in drawn.values()), [n for n, f in drawn.items() if f is None]
    return drawn


def _name(text: str) -> str | None:
    """The implementation a legend entry or tick label names, if any."""
    words = text.replace(":", " ").split()
    found = [n for n in NAMES if n in words or text == n]
    found += ["floor"] if "floor" in words else []
    found += ["resnet50"] if text == "ResNet-50" else []
    return max(found, key=len) if found else None


def named_colours(fig) -> list[tuple[str, str]]:
    """(implementation, colour) of every labelled artist drawn: error-bar series (their data
    line), bars (each bar), plain lines; and bars named by their tick labels."""
    pairs = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for container in ax.containers:
            name = _name(container.get_label())
            if isinstance(container, ErrorbarContainer) and name:
                pairs.append((name, to_hex(container.lines[0].get_color())))
            elif isinstance(container, BarContainer) and name:
                pairs += [(name, to_hex(bar.get_facecolor())) for bar in container.patches]
            elif isinstance(container, BarContainer):  # bars named by their y tick labels
                ticks = [t.get_text() for t in ax.get_yticklabels()]
                if len(ticks) == len(container.patches):
                    pairs += [(_name(t), to_hex(b.get_facecolor()))
                              for t, b in zip(ticks, container.patches, strict=True) if _name(t)]
        pairs += [(_name(line.get_label()), to_hex(line.get_color())) for line in ax.lines
                  if not line.get_label().startswith("_") and _name(line.get_label())]
    return pairs


def test_one_implementation_one_colour_in_every_plot(figures):
    seen: dict[str, set[str]] = {}
    where: dict[str, set[str]] = {}
    for file, fig in figures.items():
        for name, colour in named_colours(fig):
            seen.setdefault(name, set()).add(colour)
            where.setdefault(name, set()).add(file)
    assert set(seen) == set(NAMES), seen  # every name was found somewhere
    for name, colours in seen.items():
        assert colours == {palette.colour(name)}, (name, colours, where[name])
    # the same implementation in several figures, each with its colour
    assert len(where["fused_cpu"]) >= 5 and len(where[PLUGIN]) >= 5, where


def test_palette_builtins_distinct_and_plugins_stable_outside_them():
    eager = {n: c for n, c in palette.BUILTIN.items() if n not in ("resnet50",)}
    assert len(set(eager.values())) == len(eager)  # only ResNet-50 shares its conv's colour
    assert not set(palette.RESERVE) & set(palette.BUILTIN.values())
    names = [f"plugin_{i}" for i in range(40)]
    colours = [palette.colour(n) for n in names]
    assert set(colours) <= set(palette.RESERVE) and len(set(colours)) > 6
    assert colours == [palette.colour(n) for n in names]  # stable
    assert palette.marker("fwd") != palette.marker("fwd_bwd")
    with pytest.raises(ValueError, match="name"):
        palette.colour("")


def test_time_plots_carry_quartile_bars(frame):
    fig = time_vs_k(frame)
    bars = [c for ax in fig.axes for c in ax.containers if c.has_yerr]
    assert len(bars) == 6  # 3 implementations x 2 passes
    for container in bars:
        segments = container.lines[2][0].get_segments()
        assert all(seg[1][1] > seg[0][1] for seg in segments)  # every bar has a length


def test_quartiles_from_rounds_else_from_the_iqr_column():
    with_rounds = pd.DataFrame([planted_row("op", "unfold", 2.0, seed=3)])
    rounds = records.parse_rounds(with_rounds["rounds_s"].iloc[0])
    low, high = quartiles(with_rounds)
    assert (low[0], high[0]) == pytest.approx(tuple(np.percentile(rounds, [25, 75])))
    old = pd.DataFrame([{**planted_row("op", "unfold", 2.0, rounds=False), "iqr_s": 4e-4}])
    low, high = quartiles(old)
    assert high[0] - low[0] == pytest.approx(4e-4) and (low[0] + high[0]) / 2 == pytest.approx(
        old["median_s"].iloc[0])


def test_speedup_interval_is_the_comparison_statistics():
    fast = pd.Series(planted_row("op", "fused_cpu", 1.0, seed=1))
    slow = pd.Series(planted_row("op", "unfold", 4.0, seed=2))
    s = speedup(fast, slow)
    low, high = stats.ratio_interval(records.parse_rounds(fast["rounds_s"]),
                                     records.parse_rounds(slow["rounds_s"]))
    assert s.source == BOOTSTRAP and (s.low, s.high) == (low, high)
    assert s.low < s.value < s.high and 3.5 < s.value < 4.5
    fast_old = pd.Series(planted_row("op", "fused_cpu", 1.0, seed=1, rounds=False))
    old = speedup(fast_old, slow)
    assert old.source == IQR and old.low < old.value < old.high


def test_every_figure_is_captioned_with_command_machine_and_date(frame, figures, tmp_path):
    caption = provenance(frame, "lrbench report here")
    assert "lrbench report here" in caption and "Planted CPU / no GPU / 2 threads" in caption
    assert "2026-12-01" in caption
    fig = figures["roofline.png"]
    canvas.save(fig, tmp_path / "r.png", caption)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert any("lrbench report here" in t.get_text() for t in fig.texts)


def test_network_bars_carry_their_ratio_to_resnet_with_its_interval(frame, figures):
    """Each LR-Net bar (and the floor's) is marked with its ratio to ResNet-50 and the interval
    of lrbench.bench.comparison.ratios.ratio, the network table's statistic; ResNet-50 with none."""
    texts = [t.get_text() for ax in figures["networks.png"].axes for t in ax.texts]
    rows = network_rows(frame)
    marked = 0
    for _, group in rows.groupby(PANEL):
        resnet = group[group["label"] == "resnet50"].iloc[0]
        for _, row in group[group["label"] != "resnet50"].iterrows():
            r = ratio(row, resnet)
            assert r.low < r.value < r.high
            assert f" {r.value:.2f}x [{r.low:.2f}, {r.high:.2f}] ResNet-50" in texts
            marked += 1
    assert marked >= 4 and len(texts) == marked


def test_network_ratios_pair_rows_of_one_batch_and_size(tmp_path):
    """Two batches in one run: each gets its own panels, and B=32's LR-Net is set against B=32's
    ResNet-50 (3x), never against B=8's (it would read 12x)."""
    rows = [planted_row(target, impl, ms * scale, pass_="train", seed=i, B=B, C=3, H=224, W=224,
                        **({"k": 3, "m": 1} if target == "resnet50" else {}))
            for i, (B, scale) in enumerate(((8, 1.0), (32, 4.0)))
            for target, impl, ms in (("lrnet50", "fused_cpu", 300.0), ("resnet50", "torch", 100.0))]
    records.write(pd.DataFrame(rows), tmp_path)
    fig = networks(records.load(tmp_path))
    titles = sorted(ax.get_title() for ax in fig.axes if ax.get_visible())
    assert len(titles) == 2 and "B=32" in titles[0] + titles[1]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(texts) == 2 and all(t.startswith(" 3.0") for t in texts), texts
