"""What every benchmark script shares: one timed fit, mean +- std summaries, the Markdown table
and the JSON / Markdown result files."""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mavae.api import fit
from mavae.config import FitConfig

RESULTS = Path(__file__).parent / "results"


def timed_fit(config: FitConfig, run_dir: Path) -> dict:
    """api.fit without the report; its metrics plus wall_seconds and the config."""
    start = time.perf_counter()
    result = fit(config, run_dir, progress=False, report=False)
    return dict(result, wall_seconds=round(time.perf_counter() - start, 1), config=asdict(config))


def summarize(runs: list[dict], group: tuple[str, ...], metrics: list[str]) -> dict[tuple, dict]:
    """Per distinct value of the group keys: {metric: (mean, std, median)} over the runs that have it."""
    summary = {}
    for key in dict.fromkeys(tuple(r[g] for g in group) for r in runs):
        rows = [r for r in runs if tuple(r[g] for g in group) == key]
        summary[key] = {m: tuple(float(f([r[m] for r in rows if r.get(m) is not None]))
                                 for f in (np.mean, np.std, np.median))
                        for m in metrics if any(r.get(m) is not None for r in rows)}
        summary[key]["n_seeds"] = (len(rows), 0.0, len(rows))
    return summary


def markdown_table(summary: dict[tuple, dict], group: tuple[str, ...], metrics: list[str],
                   plain: tuple[str, ...] = ("seconds_per_epoch", "wall_seconds", "n_seeds")) -> str:
    """One row per group; mean +- std for metrics, the mean alone for the plain columns."""
    header = list(group) + metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, stats in summary.items():
        cells = [str(k) for k in key]
        for m in metrics:
            if m not in stats:
                cells.append("–")
            elif m in plain:
                cells.append(f"{stats[m][0]:.4g}")
            else:
                cells.append(f"{stats[m][0]:.3f} ± {stats[m][1]:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(out: str | Path, title: str, table: str, **payload) -> None:
    """Print the table; write out (JSON: the command, the machine, the table and payload) and the
    same stem .md (the command and the table)."""
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name] + sys.argv[1:])
    print(f"\n{title}\n\n{table}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(command=command, machine=platform.machine(), title=title, table=table,
                                   **payload), indent=2, default=str))
    out.with_suffix(".md").write_text(f"`{command}`\n\n{title}\n\n{table}\n")
    print(f"\nwrote {out}")
