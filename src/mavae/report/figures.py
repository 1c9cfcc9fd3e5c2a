"""The report's figures, each drawn with matplotlib (Agg) and returned as PNG bytes."""
from __future__ import annotations

import io
import math

import numpy as np

PANELS_PER_ROW = 10
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    _plt().close(fig)
    return buffer.getvalue()


def _image(ax, image: np.ndarray, **kwargs):
    """Show a (C, H, W) image: grey for one channel, RGB for three."""
    shown = image[0] if image.shape[0] == 1 else np.clip(image.transpose(1, 2, 0), 0, 1)
    handle = ax.imshow(shown, **({"cmap": "gray", "vmin": 0, "vmax": 1} | kwargs))
    ax.set_xticks([])
    ax.set_yticks([])
    return handle


def _grid(n_columns: int, n_rows_per_block: int, panel: float = 1.7):
    """A figure of blocks of n_rows_per_block rows, PANELS_PER_ROW columns per block; returns
    (fig, axes[block_row][column]) with every axis hidden until used."""
    plt = _plt()
    columns = min(n_columns, PANELS_PER_ROW)
    blocks = math.ceil(n_columns / PANELS_PER_ROW)
    rows = blocks * n_rows_per_block
    fig, axes = plt.subplots(rows, columns, figsize=(panel * columns + 0.8, panel * rows + 0.3), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _cell(axes, k: int, row: int, rows_per_block: int):
    return axes[(k // PANELS_PER_ROW) * rows_per_block + row][k % PANELS_PER_ROW]


def atlas(prototypes: np.ndarray, archetypes: np.ndarray | None, sizes: list[int], indices) -> bytes:
    """Per sub-population k: the decoded prototype g(mu_k) above its archetype's training image."""
    rows = 1 if archetypes is None else 2
    fig, axes = _grid(len(prototypes), rows)
    for k, image in enumerate(prototypes):
        ax = _cell(axes, k, 0, rows)
        ax.axis("on")
        _image(ax, image)
        ax.set_title(f"k={k}  n={sizes[k]}", fontsize=9)
        if k % PANELS_PER_ROW == 0:
            ax.set_ylabel("prototype", fontsize=9)
        if archetypes is not None:
            ax = _cell(axes, k, 1, rows)
            ax.axis("on")
            _image(ax, archetypes[k])
            ax.set_title(f"train #{int(indices[k])}", fontsize=8)
            if k % PANELS_PER_ROW == 0:
                ax.set_ylabel("archetype", fontsize=9)
    return _png(fig)


def halves(images: list[np.ndarray | None], scores: list[float | None], flagged: list[bool]) -> bytes:
    """Per sub-population k: the archetypes (real training images) of the two halves MA-EM splits
    it into, titled with the bimodality score b_k; images[k] is (2, C, H, W) or None."""
    fig, axes = _grid(len(images), 2)
    for k, pair in enumerate(images):
        for h in range(2):
            ax = _cell(axes, k, h, 2)
            ax.axis("on")
            if pair is None:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.5, "too few", ha="center", va="center", transform=ax.transAxes)
            else:
                _image(ax, pair[h])
            if h == 0:
                title = f"k={k}  b={scores[k]:.3g}" if scores[k] is not None else f"k={k}"
                ax.set_title(title + ("\nFLAGGED" if flagged[k] else ""), fontsize=9,
                             color="#b00020" if flagged[k] else "black")
            if k % PANELS_PER_ROW == 0:
                ax.set_ylabel(f"half {h + 1}", fontsize=9)
    return _png(fig)


def uncertainty_maps(mean_maps: dict[str, np.ndarray], flagged: list[bool], titles: dict[str, str]) -> bytes:
    """Mean U_pix and U_ssim maps per sub-population: one row per map kind, one colour scale per row."""
    names = list(mean_maps)
    k_count = len(next(iter(mean_maps.values())))
    fig, axes = _grid(k_count, len(names))
    for row, name in enumerate(names):
        maps = mean_maps[name].mean(1)  # average over channels: (K, h, w)
        finite = maps[np.isfinite(maps)]
        vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        handle = None
        for k in range(k_count):
            ax = _cell(axes, k, row, len(names))
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            if np.isfinite(maps[k]).all():
                handle = ax.imshow(maps[k], cmap="magma", vmin=0, vmax=vmax)
            else:
                ax.text(0.5, 0.5, "empty", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"k={k}" + ("  FLAGGED" if flagged[k] else ""), fontsize=9,
                         color="#b00020" if flagged[k] else "black")
            if k % PANELS_PER_ROW == 0:
                ax.set_ylabel(titles[name], fontsize=9)
        if handle is not None:
            fig.colorbar(handle, ax=[_cell(axes, k, row, len(names)) for k in range(k_count)], shrink=0.8, pad=0.01)
    return _png(fig)


def score_distributions(scores: dict[str, np.ndarray], clusters: np.ndarray, n_components: int,
                        titles: dict[str, str]) -> bytes:
    """Box plots of each score per sub-population (whiskers at 1.5 IQR)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(scores), figsize=(max(4.5, 0.55 * n_components + 2) * len(scores), 3.4),
                             squeeze=False)
    for ax, (name, values) in zip(axes[0], scores.items()):
        groups = [values[clusters == k] for k in range(n_components)]
        ax.boxplot([g if len(g) else [np.nan] for g in groups], showfliers=False)
        ax.set_xticks(range(1, n_components + 1), [str(k) for k in range(n_components)])
        ax.set_xlabel("sub-population k")
        ax.set_title(titles[name], fontsize=10)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.tight_layout()
    return _png(fig)


def latent_map(points: np.ndarray, clusters: np.ndarray, prototypes: np.ndarray, n_components: int,
               method: str) -> bytes:
    """2-D embedding of the training encodings coloured by sub-population; prototypes as stars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5.6))
    cmap = plt.get_cmap("tab10" if n_components <= 10 else "tab20")
    for k in range(n_components):
        members = points[clusters == k]
        ax.scatter(members[:, 0], members[:, 1], s=6, alpha=0.5, color=cmap(k % cmap.N),
                   label=f"k={k} ({len(members)})", linewidths=0)
    for k, (x, y) in enumerate(prototypes):
        ax.scatter([x], [y], marker="*", s=260, color=cmap(k % cmap.N), edgecolors="black", linewidths=1.2, zorder=3)
        ax.annotate(str(k), (x, y), xytext=(6, 6), textcoords="offset points", fontsize=9, weight="bold")
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.legend(fontsize=8, markerscale=2.5, loc="best", frameon=True)
    fig.tight_layout()
    return _png(fig)


def training_curves(history: list[dict], terms: list[str]) -> bytes:
    """Every loss term of history.csv against the epoch, one panel each."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    columns = min(len(terms), 4)
    rows = math.ceil(len(terms) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    epochs = [record.get("epoch", i) for i, record in enumerate(history)]
    for ax, term in zip(axes.flat, terms):
        ax.axis("on")
        pairs = [(e, r[term]) for e, r in zip(epochs, history) if isinstance(r.get(term), (int, float))]
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], marker="o", markersize=3)
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _png(fig)


def elbow(ks: list[int], distances: list[float], chosen: int) -> bytes:
    """The intra-component distance against K, the chosen knee marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    ax.plot(ks, distances, marker="o", markersize=4)
    ax.plot([chosen], [distances[ks.index(chosen)]], marker="o", markersize=11, markerfacecolor="none",
            markeredgecolor="tab:red", linestyle="none", label=f"knee: K = {chosen}")
    ax.set_xlabel("K")
    ax.set_ylabel("intra-component distance")
    ax.set_xticks(ks)
    ax.legend(frameon=False)
    fig.tight_layout()
    return _png(fig)


def prototypes_png(decoded: np.ndarray, indices, sizes) -> bytes:
    """One decoded prototype per sub-population, titled with its archetype's training index and size."""
    plt = _plt()
    k = len(decoded)
    fig, axes = plt.subplots(1, k, figsize=(1.9 * k, 2.3), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.imshow(decoded[j, 0] if decoded.shape[1] == 1 else decoded[j].transpose(1, 2, 0), cmap="gray",
                  vmin=0, vmax=1)
        title = f"k={j}" + (f"  #{int(indices[j])}" if indices is not None else "") + f"\nn={sizes[j]}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)
