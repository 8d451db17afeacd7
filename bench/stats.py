"""Medians, percentiles and the spread between repetitions; machine facts."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence


def summarize(values: Sequence[float]) -> Dict[str, float]:
    """p50/p95/p99/min/max/n of ``values`` (any unit); percentiles by linear interpolation."""
    ordered = sorted(values)
    return {"p50": percentile(ordered, 50), "p95": percentile(ordered, 95), "p99": percentile(ordered, 99),
            "min": ordered[0], "max": ordered[-1], "n": len(ordered)}


def percentile(ordered: Sequence[float], q: float) -> float:
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def spread(per_rep: List[float]) -> Dict[str, float]:
    """The median of per-repetition figures and their range: the noise between repetitions."""
    return {"median": statistics.median(per_rep), "min": min(per_rep), "max": max(per_rep),
            "reps": len(per_rep)}


def machine() -> Dict[str, object]:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {"cpu_model": model, "cores": os.cpu_count(), "python": sys.version.split()[0],
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "loadavg_at_start": load}


def commit() -> str:
    """This checkout's short commit ("unknown" outside git)."""
    found = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


def write_results(folder: Optional[str], name: str, result: Dict[str, Any], text: str) -> None:
    """``name``.json and ``name``.md in ``folder`` (created); nothing when ``folder`` is None."""
    if folder:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(result, indent=1))
        (out / f"{name}.md").write_text(text)


def proc_memory(pid: int) -> Dict[str, int]:
    """VmHWM (peak) and VmRSS of a process, in KiB, from /proc/<pid>/status."""
    found: Dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                found[name.lower() + "_kib"] = int(rest.split()[0])
    return found
