"""What every benchmark script shares: one timed fit, mean +- std summaries and the Markdown table
(from mavae.benchmark), and the JSON / Markdown result files."""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from mavae.api import fit
from mavae.benchmark import markdown_table, summarize  # noqa: F401 (re-exported for the scripts)
from mavae.config import FitConfig

RESULTS = Path(__file__).parent / "results"


def timed_fit(config: FitConfig, run_dir: Path) -> dict:
    """api.fit without the report; its metrics plus wall_seconds and the config."""
    start = time.perf_counter()
    result = fit(config, run_dir, progress=False, report=False)
    return dict(result, wall_seconds=round(time.perf_counter() - start, 1), config=asdict(config))


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
