"""The nginx phase of make bench (bench/nginx.sh starts the servers, this drives wrk).

Two HTTP services in front of the same dev server, one process each:
  nginx     examples/openresty (nginx + temporal-lua under LuaJIT, one worker process)
  python    bench/nginx_asgi.py (uvicorn + a raw ASGI app on the Python SDK client)
Two endpoints: POST /workflows (a workflow start) and GET /namespace (DescribeNamespace, a
server-cheap call). For each endpoint and connection count, the two services take turns
going first; wrk (bench/nginx_wrk.lua) measures requests/s and p50/p99 latency, and the
service process's CPU (utime+stime of /proc/<pid>/stat, every thread) and the dev server's
are read around each run. Nothing asserts timing.

  python bench/nginx_bench.py --nginx URL PID --python URL PID --server-pid PID \
      [--duration 10] [--connections 1,16,64] [--out-dir DIR] [--readme bench/README.md]
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")
START, MARK_END = "<!-- nginx-bench:start -->", "<!-- nginx-bench:end -->"


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def wrk(url, path, connections, duration, start_prefix=None):
    env = dict(os.environ)
    env.pop("BENCH_START", None)
    if start_prefix:
        env["BENCH_START"] = start_prefix
    cmd = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration, "--timeout", "30s",
           "-s", os.path.join(HERE, "nginx_wrk.lua"), url + path]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 120)
    m = re.search(r"^WRK (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        raise RuntimeError("wrk failed (%d): %s %s" % (out.returncode, out.stdout[-500:], out.stderr[-500:]))
    return json.loads(m.group(1))


def measure(svc, endpoint, connections, duration, server_pid, tag):
    path = "/workflows" if endpoint == "start" else "/namespace"
    prefix = "bench-%s-%s-c%d-%s" % (svc["name"], endpoint, connections, tag) if endpoint == "start" else None
    c0, s0 = cpu_seconds(svc["pid"]), cpu_seconds(server_pid)
    r = wrk(svc["url"], path, connections, duration, prefix)
    c1, s1 = cpu_seconds(svc["pid"]), cpu_seconds(server_pid)
    n = max(r["requests"], 1)
    secs = r["duration_us"] / 1e6
    errors = r["non_2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    return {
        "service": svc["name"], "endpoint": endpoint, "connections": connections,
        "requests": r["requests"], "rps": r["requests"] / secs if secs else 0,
        "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000,
        "cpu_us_per_req": (c1 - c0) / n * 1e6, "cpu_util": (c1 - c0) / secs if secs else 0,
        "server_cpu_us_per_req": (s1 - s0) / n * 1e6, "errors": errors, "wrk": r,
    }


def report(run):
    lines = []
    meta = run["meta"]
    lines.append("Run %s on %s (%d cores), %d s per cell, wrk -t1, one nginx worker / one uvicorn process, "
                 "same dev server (in memory). %s." % (meta["time"], meta["machine"], meta["cores"], meta["duration"],
                                                      meta["versions"]))
    lines.append("")
    lines.append("| endpoint | conns | nginx + temporal-lua req/s | Python req/s | ratio | nginx p50 / p99 ms | Python p50 / p99 ms "
                 "| nginx worker CPU µs/req | Python CPU µs/req | CPU ratio | dev server CPU µs/req (nginx / Python) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    cells = {(r["service"], r["endpoint"], r["connections"]): r for r in run["results"]}
    errs = []
    for endpoint, label in (("start", "POST /workflows"), ("namespace", "GET /namespace")):
        for c in run["meta"]["connections"]:
            a, b = cells.get(("nginx", endpoint, c)), cells.get(("python", endpoint, c))
            if not a or not b:
                lines.append("| %s | %d | %s | %s | | | | | | | |" % (label, c, "missing" if not a else "%.0f" % a["rps"],
                                                                   "missing" if not b else "%.0f" % b["rps"]))
                continue
            lines.append("| %s | %d | %.0f | %.0f | %.2fx | %.2f / %.2f | %.2f / %.2f | %.0f | %.0f | %.2fx | %.0f / %.0f |" % (
                label, c, a["rps"], b["rps"], a["rps"] / b["rps"] if b["rps"] else 0,
                a["p50_ms"], a["p99_ms"], b["p50_ms"], b["p99_ms"],
                a["cpu_us_per_req"], b["cpu_us_per_req"],
                b["cpu_us_per_req"] / a["cpu_us_per_req"] if a["cpu_us_per_req"] else 0,
                a["server_cpu_us_per_req"], b["server_cpu_us_per_req"]))
            for r in (a, b):
                if r["errors"]:
                    errs.append("%s %s c=%d: %d errors of %d requests (%s)" % (r["service"], label, c, r["errors"], r["requests"],
                                                                               json.dumps(r["wrk"])))
    lines.append("")
    lines.append("ratio: nginx req/s over Python's; CPU ratio: Python's CPU per request over nginx's (above 1: nginx "
                 "spends less). CPU is the whole service process (every thread: for nginx the worker, temporal's "
                 "poller and relay threads and gRPC's), from /proc/<pid>/stat around each wrk run.")
    lines.append("")
    lines.append("Errors (non-2xx answers, socket errors): " + ("none." if not errs else ""))
    for e in errs:
        lines.append("- " + e)
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nginx", nargs=2, metavar=("URL", "PID"), required=True)
    ap.add_argument("--python", nargs=2, metavar=("URL", "PID"), required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--connections", default="1,16,64")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--readme")
    ap.add_argument("--versions", default="")
    a = ap.parse_args()
    conns = [int(c) for c in a.connections.split(",")]
    services = [{"name": "nginx", "url": a.nginx[0], "pid": int(a.nginx[1])},
                {"name": "python", "url": a.python[0], "pid": int(a.python[1])}]
    tag = str(int(time.time()))
    for svc in services:  # warm-up: connections made, code paths hot; not recorded
        for endpoint in ("start", "namespace"):
            measure(svc, endpoint, 16, a.warmup, a.server_pid, tag + "-warm")
    results, turn = [], 0
    for endpoint in ("start", "namespace"):
        for c in conns:
            order = services if turn % 2 == 0 else services[::-1]
            turn += 1
            for svc in order:
                try:
                    r = measure(svc, endpoint, c, a.duration, a.server_pid, tag)
                except Exception as e:  # a failed cell is reported, the run goes on
                    print("nginx bench: %s %s c=%d failed: %s" % (svc["name"], endpoint, c, e), file=sys.stderr)
                    continue
                results.append(r)
                print("nginx bench: %-6s %-9s c=%-3d %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms  CPU %6.0f us/req  errors %d" % (
                    r["service"], endpoint, c, r["rps"], r["p50_ms"], r["p99_ms"], r["cpu_us_per_req"], r["errors"]),
                    file=sys.stderr)
    run = {"meta": {"time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "machine": platform.machine(), "cores": os.cpu_count(), "duration": a.duration,
                    "connections": conns, "versions": a.versions},
           "results": results}
    os.makedirs(a.out_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(a.out_dir, "nginx-%s.json" % stamp), "w") as f:
        json.dump(run, f, indent=1)
    text = report(run)
    with open(os.path.join(a.out_dir, "nginx-latest.md"), "w") as f:
        f.write(text)
    if a.readme:
        with open(a.readme) as f:
            readme = f.read()
        if START in readme and MARK_END in readme:
            head, rest = readme.split(START, 1)
            _, tail = rest.split(MARK_END, 1)
            readme = head + START + "\n" + text + MARK_END + tail
        else:
            readme += "\n" + START + "\n" + text + MARK_END + "\n"
        with open(a.readme, "w") as f:
            f.write(readme)
    sys.stdout.write(text)
    missing = 2 * 2 * len(conns) - len(results)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
