"""The Python SDK side of the benchmark: the twin of bench/workload.lua.

One workload per process, parameters as JSON, results as one JSON object on stdout:

    python bench/workload.py throughput '{"address":"127.0.0.1:7233","count":2000,...}'

Same work in the same order as the Lua side, through temporalio's public client API
(Client.connect, start_workflow, get_workflow_handle, describe, signal, query,
execute_workflow, DataConverter.default.payload_converter). Timing uses time.monotonic()
(CLOCK_MONOTONIC, like temporal.core.now()); client CPU is getrusage(RUSAGE_SELF): user +
sys of every thread, the SDK's Rust core threads included; server CPU is read from
/proc/<pid>/stat of the dev server (and the worker) around the measured section only.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import time
import uuid

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.converter import DataConverter

now = time.monotonic
P: dict = {}  # the workload's parameters (set by main)


# ---------------------------------------------------------------- process measurements


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def proc_cpu(pid) -> tuple[float, float] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[11]) / P["clk_tck"], int(fields[12]) / P["clk_tck"]


def machine_cpu() -> float:
    """CPU seconds the whole machine was busy (every core): user, nice, system, irq, softirq, steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / P["clk_tck"]


def sides() -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    t = {"wall": now(), "client_user": ru.ru_utime, "client_sys": ru.ru_stime, "machine_cpu": machine_cpu()}
    t["client_cpu"] = ru.ru_utime + ru.ru_stime
    for who in ("server", "worker"):
        pid = P.get(f"{who}_pid")
        if pid:
            cpu = proc_cpu(pid)
            if cpu:
                t[f"{who}_cpu"] = cpu[0] + cpu[1]
    return t


def deltas(a: dict, b: dict) -> dict:
    return {k: b[k] - a[k] for k in a if k in b}


async def connect() -> Client:
    return await Client.connect(P["address"], namespace=P["namespace"])


# ---------------------------------------------------------------- workloads


async def throughput() -> dict:
    """`count` starts by `concurrency` tasks, each starting the next id until none is left."""
    client = await connect()
    rss_connected = rss_kib()
    count = P["count"]
    latencies = [0.0] * count
    indices = iter(range(count))

    async def run() -> None:
        for i in indices:  # one iterator shared by all tasks: each index is taken once
            t0 = now()
            await client.start_workflow(
                P["workflow_type"], "payload", id=f"{P['id_prefix']}{i + 1}", task_queue=P["task_queue"]
            )
            latencies[i] = now() - t0

    before = sides()
    await asyncio.gather(*(run() for _ in range(P["concurrency"])))
    after = sides()
    return {"calls": count, "latencies": latencies, "rss_connected_kib": rss_connected,
            "rss_end_kib": rss_kib(), **deltas(before, after)}


async def rpc_throughput() -> dict:
    """A server-cheap RPC (GetSystemInfo, raw in both clients): the clients' own ceiling,
    where the server's persistence does not set the pace."""
    client = await connect()
    indices = iter(range(P["count"]))

    async def run() -> None:
        for _ in indices:
            await client.workflow_service.get_system_info(GetSystemInfoRequest())

    before = sides()
    await asyncio.gather(*(run() for _ in range(P["concurrency"])))
    return {"calls": P["count"], **deltas(before, sides())}


async def memory() -> dict:
    """RSS growth for `count` live handles (no RPC: get_workflow_handle with a run id)."""
    client = await connect()
    gc.collect()
    rss_connected, anon_connected = rss_kib(), rss_kib("RssAnon")
    handles = [
        client.get_workflow_handle(f"{P['id_prefix']}{i + 1}", run_id=str(uuid.uuid4()))
        for i in range(P["count"])
    ]
    gc.collect()
    rss_handles = rss_kib()
    assert len(handles) == P["count"]
    return {"handles": P["count"], "rss_connected_kib": rss_connected, "rss_handles_kib": rss_handles,
            "rss_anon_connected_kib": anon_connected, "rss_file_connected_kib": rss_kib("RssFile")}


def make_value(records: int) -> dict:
    """The benchmark's JSON-like value: `records` records, the same in bench/workload.lua."""
    return {
        "kind": "bench",
        "records": [
            {
                "id": i, "name": f"user-{i}", "email": f"user{i}@example.com",
                "active": i % 2 == 0, "score": i * 1.5, "tags": ["alpha", "beta", "gamma"],
                "address": {"street": f"{i} Main Street", "city": "Springfield", "zip": f"{i:05d}"},
            }
            for i in range(1, records + 1)
        ],
    }


async def payload() -> dict:
    """Encode + decode of one value per size, repeated for at least `min_seconds`."""
    pc = DataConverter.default.payload_converter
    results = []
    before = sides()
    for size in P["sizes"]:
        value = make_value(size["records"])
        payloads = pc.to_payloads([value])
        assert pc.from_payloads(payloads)[0]["records"][-1]["id"] == size["records"]
        iterations, t0, c0 = 0, now(), time.process_time()
        while True:
            pc.from_payloads(pc.to_payloads([value]))
            iterations += 1
            if iterations >= 3 and now() - t0 >= P["min_seconds"]:
                break
        results.append({
            "label": size["label"], "bytes": len(payloads[0].data), "iterations": iterations,
            "seconds_per_op": (now() - t0) / iterations,
            "cpu_per_op": (time.process_time() - c0) / iterations,
        })
    return {"sizes": results, **deltas(before, sides())}


async def scaling() -> dict:
    """`count` result() long polls held open at once on one workflow nobody runs, released
    together by terminating it."""
    client = await connect()
    h = await client.start_workflow(P["workflow_type"], id=P["id"], task_queue=P["task_queue"])
    gc.collect()
    rss_before = rss_kib()
    count = P["count"]
    state = {"issued": 0, "returned": 0}

    async def hold() -> None:
        state["issued"] += 1
        try:
            await h.result()
            raise AssertionError("a terminated workflow's result raises")
        except AssertionError:
            raise
        except Exception:
            state["returned"] += 1

    t0 = now()
    tasks = [asyncio.ensure_future(hold()) for _ in range(count)]
    while state["issued"] < count:
        await asyncio.sleep(0.01)
    issue_s = now() - t0
    await asyncio.sleep(P["settle_seconds"])  # the calls reach the server
    a = sides()
    await asyncio.sleep(P["idle_seconds"])
    b = sides()
    gc.collect()
    rss_held = rss_kib()
    assert state["returned"] == 0, "no call returned before the release"
    t1 = now()
    await h.terminate()
    await asyncio.gather(*tasks)
    return {"calls": count, "rss_before_kib": rss_before, "rss_held_kib": rss_held, "issue_s": issue_s,
            "idle_cpu": b["client_cpu"] - a["client_cpu"], "idle_wall": b["wall"] - a["wall"],
            "release_s": now() - t1, "returned": state["returned"]}


async def latency() -> dict:
    """Sequential describe, query, signal (WaitForSignal) and execute_workflow (Greet)."""
    client = await connect()
    tq, prefix, n = P["worker_task_queue"], P["id_prefix"], P["count"]
    out: dict = {}

    async def timed(op: str, count: int, fn) -> None:
        lat = []
        before = sides()
        for i in range(1, count + 1):
            t0 = now()
            await fn(i)
            lat.append(now() - t0)
        out[op] = {"calls": count, "latencies": lat, **deltas(before, sides())}

    h = await client.start_workflow("WaitForSignal", id=f"{prefix}wait", task_queue=tq)
    # The first query waits for the worker's first workflow task: not part of the numbers.
    assert (await h.query("status"))["approved"] is False

    async def query(_i):
        assert (await h.query("status"))["approved"] is False

    await timed("describe", n, lambda _i: h.describe())
    await timed("query", n, query)
    # The first "approve" completes the workflow, so each signal goes to a fresh one
    # (started outside the timed call).
    fresh = [await client.start_workflow("WaitForSignal", id=f"{prefix}sig-{i}", task_queue=tq)
             for i in range(1, n + 1)]
    await timed("signal", n, lambda i: fresh[i - 1].signal("approve", i))

    async def execute(i):
        r = await client.execute_workflow("Greet", "bench", id=f"{prefix}greet-{i}", task_queue=tq)
        assert r == "Hello, bench!"

    await timed("execute", P["execute_count"], execute)
    await h.signal("approve")
    return out


async def activity_worker() -> dict:
    """The twin of workload.lua's activity_worker: a Python SDK Worker with `slots` slots
    serves the no-op activity; the bench's Python worker runs FanOutLuaActivities against it."""
    from temporalio import activity
    from temporalio.worker import Worker

    @activity.defn(name="noop")
    async def noop(i: int) -> int:
        return i

    client = await connect()
    tq = P["id_prefix"] + "tq"

    async def fan_out(wf_id: str, count: int) -> None:
        r = await client.execute_workflow(
            "FanOutLuaActivities",
            {"activity": "noop", "task_queue": tq, "count": count, "start_to_close": 60},
            id=wf_id, task_queue=P["worker_task_queue"])
        assert len(r) == count and r[-1] == count - 1

    async with Worker(client, task_queue=tq, activities=[noop],
                      max_concurrent_activities=P["slots"]):
        await fan_out(P["id_prefix"] + "warmup", P["warmup"])
        before = sides()
        await fan_out(P["id_prefix"] + "measured", P["count"])
        d = deltas(before, sides())
    return {"activities": P["count"], **d}


def main() -> None:
    P.update(json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))
    workloads = {"throughput": throughput, "rpc_throughput": rpc_throughput, "memory": memory,
                 "payload": payload, "latency": latency, "scaling": scaling,
                 "activity_worker": activity_worker}
    fn = workloads[sys.argv[1]]
    result = asyncio.run(fn())
    result["api"] = "high-level"
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # The SDK's Rust threads can still call into Python while the interpreter finalizes,
    # which aborts or segfaults at exit now and then (temporalio/sdk-python#300): the
    # results are out, skip the teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
