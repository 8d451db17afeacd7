"""Targets (PASS/MISS, never asserted), the markdown table and the PNG plot."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional


def _row(rows: List[Dict[str, Any]], **match: Any) -> Optional[Dict[str, Any]]:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def targets(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each target with the measured figure and PASS/MISS."""
    out: List[Dict[str, Any]] = []

    def add(name: str, measured: float, limit: float, unit: str, ok: bool) -> None:
        out.append({"target": name, "measured": measured, "limit": limit, "unit": unit,
                    "status": "PASS" if ok else "MISS"})

    rows = results["overhead"]["rows"]
    for encoding, limit in (("linear16", 2.0), ("flac", 10.0)):
        row = _row(rows, encoding=encoding, seconds=5)
        if row:
            add(f"plugin overhead p50, 5 s {encoding}", row["plugin_ms"]["p50"], limit, "ms",
                row["plugin_ms"]["p50"] <= limit)
    load = results["server"]
    level = _row(load["levels"], clients=32)
    if level:
        add("server added latency p50 @ 32 clients", level["added_latency_ms"]["p50"], 5.0, "ms",
            level["added_latency_ms"]["p50"] <= 5.0)
        add("server added latency p99 @ 32 clients", level["added_latency_ms"]["p99"], 25.0, "ms",
            level["added_latency_ms"]["p99"] <= 25.0)
    for level in load["levels"]:
        if level["clients"] <= load["server_workers"]:
            add(f"throughput vs ideal @ {level['clients']} clients", level["rps_vs_ideal"] * 100, 90.0, "%",
                level["rps_vs_ideal"] >= 0.9)
    long_rows = results["long_audio"]["rows"]
    four = _row(long_rows, max_workers=4)
    if four:
        add("5-min audio, max_workers=4 vs 1", four["fraction_of_1"] * 100, 35.0, "%",
            four["fraction_of_1"] <= 0.35)
    for encoding, limit in (("flac", 60.0), ("ogg_opus", 15.0)):
        row = _row(results["upload"]["rows"], signal="speech_like", encoding=encoding)
        if row:
            add(f"{encoding} bytes vs linear16 (speech-like)", row["vs_linear16"] * 100, limit, "%",
                row["vs_linear16"] * 100 <= limit)
    conn = results["connections"]
    for kind in ("sequential", "concurrent"):
        # A count, not a rate: a pool opens at most pool_size connections whatever the number of calls.
        figure = conn[kind]
        add(f"connections for {conn['transcriptions']} {kind} transcriptions", figure, conn["pool_size"], "",
            figure <= conn["pool_size"])
    return out


def _f(value: float, digits: int = 1) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(results: Dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"# Benchmark ({results['mode']})", "",
             f"Machine: {m['cpu_model']}, {m['cores']} cores, Python {m['python']}, load average at start "
             f"{m['loadavg_at_start']}. Fake Google on loopback; timings are medians of repeated runs and "
             f"shared-machine noise is shown as the range between repetitions.", ""]
    o = results["overhead"]
    lines += [f"## 1. Plugin overhead (transcribe() minus the fake's {o['delay_s'] * 1000:g} ms delay, "
              f"{o['reps']} runs each)", "",
              f"Baseline: {o['baseline']}.", "",
              "| clip | encoding | ours p50 ms | ours p95 ms | bare p50 ms | bare p95 ms | ratio p50 | "
              "net p50 ms | codec p50 ms | block p50 range ms |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in o["rows"]:
        b = r["plugin_p50_by_block_ms"]
        lines.append(f"| {r['seconds']:g} s | {r['encoding']} | {_f(r['plugin_ms']['p50'], 2)} | "
                     f"{_f(r['plugin_ms']['p95'], 2)} | {_f(r['baseline_ms']['p50'], 2)} | "
                     f"{_f(r['baseline_ms']['p95'], 2)} | {_f(r['ratio_p50'], 2)} | {_f(r['net_ms_p50'], 2)} | "
                     f"{_f(r['encode_ms']['p50'], 2)} | {_f(b['min'], 2)}-{_f(b['max'], 2)} |")
    s = results["server"]
    lines += ["", f"## 2. Server under load ({s['request']}, fake delay {s['delay_s'] * 1000:g} ms, "
              f"server workers={s['server_workers']} queue={s['server_queue']}, engine connection pool "
              f"{s['engine_pool_size']}, {s['reps']} reps)", "",
              f"Clients: {s['clients']}. Baseline: {s['baseline']}.", "",
              "| clients | req/s (range) | ideal req/s | % of ideal | added p50 ms | p95 ms | p99 ms | "
              "p50 range ms | bare added p50 / p99 ms | failures |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for lv in s["levels"]:
        a, r, b = lv["added_latency_ms"], lv["rps"], lv["baseline_added_latency_ms"]
        pr = lv["added_p50_ms_by_rep"]
        lines.append(f"| {lv['clients']} | {_f(r['median'])} ({_f(r['min'])}-{_f(r['max'])}) | "
                     f"{_f(lv['ideal_rps'])} | {_f(lv['rps_vs_ideal'] * 100)} | {_f(a['p50'])} | {_f(a['p95'])} | "
                     f"{_f(a['p99'])} | {_f(pr['min'])}-{_f(pr['max'])} | {_f(b['p50'])} / {_f(b['p99'])} | "
                     f"{lv['failures']} |")
    lines += ["", f"Server RSS ({s['rss_clients']} clients):", "", "| requests served | VmHWM MiB | VmRSS MiB |",
              "|---|---|---|"]
    for r in s["rss"]:
        lines.append(f"| {r['requests']} | {_f(r['vmhwm_kib'] / 1024)} | {_f(r['vmrss_kib'] / 1024)} |")
    la = results["long_audio"]
    lines += ["", f"## 3. Long audio ({la['minutes']:g} min, {la['delay_model']}, {la['reps']} reps)", "",
              "| max_workers | requests | wall s (range) | ideal s | speed-up | % of max_workers=1 |",
              "|---|---|---|---|---|---|"]
    for r in la["rows"]:
        w = r["wall_s"]
        lines.append(f"| {r['max_workers']} | {r['requests']} | {_f(w['median'], 2)} ({_f(w['min'], 2)}-"
                     f"{_f(w['max'], 2)}) | {_f(r['ideal_s'], 2)} | {_f(r['speedup'], 2)} | "
                     f"{_f(r['fraction_of_1'] * 100)} |")
    up = results["upload"]
    lines += ["", "## 4. Upload size", ""]
    lines += [f"- `{name}`: {text}" for name, text in up["signals"].items()]
    if not up["espeak_ng_available"]:
        lines.append("- espeak-ng not found: synthesized speech not measured")
    lines += [f"- {up['measured']}", "", "| signal | encoding | body B/s | audio kbit/s | vs linear16 |",
              "|---|---|---|---|---|"]
    for r in up["rows"]:
        lines.append(f"| {r['signal']} | {r['encoding']} | {r['body_bytes_per_s']:.0f} | {_f(r['kbit_per_s'])} | "
                     f"{_f(r['vs_linear16'] * 100)} % |")
    c = results["connections"]
    lines += ["", f"## 5. Connections to Google ({c['transcriptions']} transcriptions, fake delay "
              f"{c['delay_s'] * 1000:g} ms)", "",
              "| sequential | concurrent (all at once) | client pool size | concurrent wall s |", "|---|---|---|---|",
              f"| {c['sequential']} | {c['concurrent']} | {c['pool_size']} | {_f(c['concurrent_wall_s'], 2)} |"]
    lines += ["", "## Targets (measured, not asserted)", "", "| target | measured | limit | status |",
              "|---|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {_f(t['measured'], 2)} {t['unit']} | {t['limit']:g} {t['unit']} | "
                     f"{t['status']} |")
    lines += ["", f"Plot: {results['plot'] or 'not drawn: ' + results['plot_skipped']}", ""]
    return "\n".join(lines)


def plot(results: Dict[str, Any], path: Path) -> Optional[str]:
    """Draw the PNG; the reason it was not drawn, or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib is not importable ({exc})"
    s, la = results["server"], results["long_audio"]
    clients = [lv["clients"] for lv in s["levels"]]
    fig, (lat, thr, spd) = plt.subplots(1, 3, figsize=(15, 4.5))
    for key, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
        lat.plot(clients, [lv["added_latency_ms"][key] for lv in s["levels"]], style, label=f"server {key}")
    lat.plot(clients, [lv["baseline_added_latency_ms"]["p50"] for lv in s["levels"]], "k.-",
             label="bare client->fake p50")
    lat.set(xscale="log", yscale="log", xlabel="concurrent clients",
            ylabel=f"added latency over {s['delay_s'] * 1000:g} ms (ms)", title="Server added latency")
    lat.set_xticks(clients, [str(c) for c in clients])
    lat.legend(fontsize=8)
    thr.plot(clients, [lv["rps"]["median"] for lv in s["levels"]], "o-", label="server")
    thr.plot(clients, [lv["ideal_rps"] for lv in s["levels"]], "k--", label="ideal: clients / delay")
    thr.plot(clients, [lv["capped_ideal_rps"] for lv in s["levels"]], "g:",
             label="ideal capped at min(workers, pool)")
    thr.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="requests/s", title="Server throughput")
    thr.set_xticks(clients, [str(c) for c in clients])
    thr.legend(fontsize=8)
    workers = [r["max_workers"] for r in la["rows"]]
    spd.plot(workers, [r["speedup"] for r in la["rows"]], "o-", label="measured")
    spd.plot(workers, [la["rows"][0]["ideal_s"] / r["ideal_s"] for r in la["rows"]], "k--",
             label="ideal for its part count")
    spd.set(xlabel="max_workers", ylabel="speed-up vs max_workers=1",
            title=f"{la['minutes']:g}-min audio ({la['rows'][0]['requests']} parts)")
    spd.legend(fontsize=8)
    fig.suptitle(f"{results['machine']['cpu_model']}, {results['machine']['cores']} cores, "
                 f"Python {results['machine']['python']} ({results['mode']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
