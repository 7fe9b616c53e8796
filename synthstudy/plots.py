"""Figure style and the plot kinds notebooks share; figures are saved as PNG and SVG, atomically.

    >>> from synthstudy import plots
    >>> fig = plots.accuracy_vs_size(summary, x="n", hue="arm")
    >>> plots.save(fig, "baseline_accuracy_vs_n", run.dir)    # -> run.dir/figures/ (part of the run record)
    >>> plots.publish(run.dir)                                  # the report notebook: -> the repo's figures/
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "ipympl")) else None
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from .runs import PROJECT_ROOT, atomic_path  # noqa: E402

FIGURES_DIR = PROJECT_ROOT / "figures"


def style():
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "svg.fonttype": "none"})


def accuracy_vs_size(summary, x: str = "n", hue: str | None = None, ax=None, label: str = "test accuracy (%)",
                     logx: bool = True):
    """Mean with a 95% CI band per hue level; `summary` comes from metrics.summarize."""
    style()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    groups = summary.groupby(hue) if hue else [(None, summary)]
    for name, g in groups:
        g = g.sort_values(x)
        line, = ax.plot(g[x], g["mean"] * 100, marker="o", label=name)
        ax.fill_between(g[x], g["ci_low"] * 100, g["ci_high"] * 100, color=line.get_color(), alpha=0.2)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(label)
    if hue:
        ax.legend(title=hue)
    ax.figure.tight_layout()
    return ax.figure


def paired_differences(compared, label: str = "label", ax=None, margin: float | None = None,
                       title: str = "paired difference vs reference"):
    """Forest plot of `metrics.paired_comparisons` rows: mean difference with its 95% CI per row (points), the
    equivalence margin as a shaded band, and the verdict written beside each row."""
    style()
    rows = compared.reset_index(drop=True)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.4))
    y = list(range(len(rows)))[::-1]
    colors = {"higher": "tab:green", "lower": "tab:red", "equivalent": "tab:blue", "inconclusive": "tab:gray"}
    for yi, r in zip(y, rows.itertuples()):
        low, high = r.ci_low * 100, r.ci_high * 100
        ax.errorbar([r.difference * 100], [yi], xerr=[[r.difference * 100 - low], [high - r.difference * 100]],
                    fmt="o", color=colors.get(r.verdict, "black"), capsize=3)
        ax.annotate(r.verdict, (high, yi), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
    if margin:
        ax.axvspan(-margin * 100, margin * 100, color="tab:blue", alpha=0.08, label=f"±{margin * 100:g} pts margin")
        ax.legend(fontsize=7, loc="lower right")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([str(v) for v in rows[label]], fontsize=7)
    ax.set_xlabel("difference (accuracy points), 95% CI over paired seeds")
    ax.set_title(title, fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def save(fig, name: str, run_dir: Path) -> list[Path]:
    """Write `name`.png/.svg into `run_dir/figures` (the run's record; the report notebook publishes them)."""
    written = []
    for ext in ("png", "svg"):
        path = Path(run_dir) / "figures" / f"{name}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight")
        written.append(path)
    return written


def publish(run_dir: Path, target: Path = FIGURES_DIR) -> list[Path]:
    """Copy a run's figures (PNG and SVG from `run_dir/figures`) into `target` (the README's figures/), atomically;
    returns the copies. Only the report notebook calls this, so figures/ always matches the run records."""
    copied = []
    for source in sorted((Path(run_dir) / "figures").glob("*")):
        if source.suffix not in (".png", ".svg"):
            continue
        path = Path(target) / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(source.read_bytes())
        copied.append(path)
    return copied


def image_grid(ax, images, rows: int, pad: int = 1):
    """Show a batch of float [0, 1] images (B, C, H, W) on `ax` as `rows` rows (row-major order), no axes."""
    from torchvision.utils import make_grid
    cols = max(1, len(images) // rows)
    grid = make_grid(images[: rows * cols], nrow=cols, padding=pad, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if images.shape[1] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    return ax
