"""Python (temporalio) worker that hosts the workflows and activities the Lua specs drive.

Run by spec/run.sh with the test bed's venv python:

    worker.py --address 127.0.0.1:PORT --namespace default --task-queue lua-test-tq \
              --ready-file .testbed/worker.ready

Once the worker polls, it runs one "Greet" workflow through itself (proving the whole round trip),
then writes the ready file and prints READY. SIGTERM/SIGINT shut it down gracefully.

Workflow type names here are the contract with the specs: change them only together.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import signal
import sys
import uuid
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker


# ---------------------------------------------------------------- activities


@activity.defn(name="compose_greeting")
async def compose_greeting(name: str) -> str:
    return f"Hello, {name}!"


# ---------------------------------------------------------------- workflows


@workflow.defn(name="Greet")
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            compose_greeting,
            name,
            start_to_close_timeout=datetime.timedelta(seconds=10),
        )


def _describe(values: tuple) -> dict:
    # With *args the SDK decodes every payload without type hints, so JSON 1 stays int,
    # 1.0 stays float, null is None: exactly what the Lua side sent.
    return {
        "values": list(values),
        "types": [type(v).__name__ for v in values],
    }


@workflow.defn(name="Echo")
class Echo:
    @workflow.run
    async def run(self, *args: Any) -> dict:
        return _describe(args)


@workflow.defn(name="Slow")
class Slow:
    @workflow.run
    async def run(self, seconds: float) -> float:
        await workflow.sleep(seconds)
        return seconds


@workflow.defn(name="Fail")
class Fail:
    @workflow.run
    async def run(self, message: str) -> None:
        raise ApplicationError(message, {"detail": 1}, type="MyError", non_retryable=True)


@workflow.defn(name="WaitForSignal")
class WaitForSignal:
    """Signal "approve" (args recorded), query "status", update "add" (validator: n >= 0).

    Completes once approved (after in-flight update handlers finish), returning the args of
    every "approve" signal received, in order, each as a list.
    """

    def __init__(self) -> None:
        self.approved = False
        self.signals: list = []
        self.total = 0
        self.updates = 0

    @workflow.run
    async def run(self) -> list:
        await workflow.wait_condition(
            lambda: self.approved and workflow.all_handlers_finished()
        )
        return self.signals

    @workflow.signal(name="approve")
    async def approve(self, *args: Any) -> None:
        self.signals.append(list(args))
        self.approved = True

    @workflow.query(name="status")
    def status(self) -> dict:
        return {
            "approved": self.approved,
            "signals": self.signals,
            "total": self.total,
            "updates": self.updates,
        }

    @workflow.update(name="add")
    async def add(self, n: int) -> int:
        self.total += n
        self.updates += 1
        return self.total

    @add.validator
    def validate_add(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool):
            raise ValueError(f"add expects an integer, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"add rejects negative numbers: {n}")


@workflow.defn(name="ContinueAsNew")
class ContinueAsNewWorkflow:
    @workflow.run
    async def run(self, n: int) -> str:
        if n > 0:
            workflow.continue_as_new(n - 1)
        return "done"


def _sa_value(v: Any) -> Any:
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return [_sa_value(x) for x in v]
    return v


@workflow.defn(name="Info")
class Info:
    """Returns what the server told the workflow about itself: start options as seen from
    the other side (memo, search attributes, ids, queue, timeouts, attempt, cron)."""

    @workflow.run
    async def run(self, *args: Any) -> dict:
        info = workflow.info()

        def secs(td: datetime.timedelta | None) -> float | None:
            return None if td is None else td.total_seconds()

        return {
            "args": list(args),
            "workflow_id": info.workflow_id,
            "run_id": info.run_id,
            "workflow_type": info.workflow_type,
            "task_queue": info.task_queue,
            "namespace": info.namespace,
            "attempt": info.attempt,
            "cron_schedule": info.cron_schedule,
            "execution_timeout": secs(info.execution_timeout),
            "run_timeout": secs(info.run_timeout),
            "task_timeout": secs(info.task_timeout),
            "memo": dict(workflow.memo()),
            "search_attributes": {
                pair.key.name: _sa_value(pair.value)
                for pair in info.typed_search_attributes
            },
            "continued_run_id": info.continued_run_id,
            "parent": None
            if info.parent is None
            else {"workflow_id": info.parent.workflow_id, "run_id": info.parent.run_id},
        }


WORKFLOWS = [Greet, Echo, Slow, Fail, WaitForSignal, ContinueAsNewWorkflow, Info]
ACTIVITIES = [compose_greeting]


# ---------------------------------------------------------------- workflow client specs
# (spec/workflow_spec.lua)


@workflow.defn(name="RetryOnce")
class RetryOnce:
    """Fails its first attempt (a retryable ApplicationError), then returns its attempt and
    the run id chain it saw: proves result() follows the retry chain."""

    @workflow.run
    async def run(self) -> dict:
        info = workflow.info()
        if info.attempt == 1:
            raise ApplicationError("first attempt fails", type="Flaky")
        return {"attempt": info.attempt, "run_id": info.run_id}


@workflow.defn(name="UpdateFails")
class UpdateFails:
    """Update "boom" raises an ApplicationError from its handler (not the validator), with
    details; query "boom_query" raises too. Completes on signal "done"."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return "finished"

    @workflow.signal(name="done")
    def finish(self) -> None:
        self.done = True

    @workflow.update(name="boom")
    async def boom(self, message: str) -> None:
        raise ApplicationError(message, {"k": [1, 2]}, type="BoomError", non_retryable=True)

    @workflow.query(name="boom_query")
    def boom_query(self) -> None:
        raise RuntimeError("query handler failed")


WORKFLOWS += [RetryOnce, UpdateFails]


# ---------------------------------------------------------------- async activity specs (issue 4)

import base64 as _base64
import json as _json

from temporalio.common import RetryPolicy as _RetryPolicy
from temporalio.exceptions import ActivityError as _ActivityError
from temporalio.exceptions import CancelledError as _CancelledError
from temporalio.workflow import ActivityCancellationType as _ActivityCancellationType


@activity.defn(name="complete_async")
async def complete_async(path: str) -> None:
    """Writes its task token and ids (JSON, token base64) to `path`, then completes
    asynchronously: the Lua spec finishes it through an AsyncActivityHandle."""
    info = activity.info()
    data = {
        "task_token": _base64.b64encode(info.task_token).decode(),
        "workflow_id": info.workflow_id,
        "run_id": info.workflow_run_id,
        "activity_id": info.activity_id,
    }
    with open(path + ".tmp", "w") as f:
        _json.dump(data, f)
    os.replace(path + ".tmp", path)
    activity.raise_complete_async()


@workflow.defn(name="AsyncActivity")
class AsyncActivity:
    """Runs complete_async (one attempt) and reports what the activity ended with:
    {"result": value} or {"error": "ActivityError", "cause": class, "message", "type",
    "non_retryable", "details"}. Signal "cancel_activity" cancels the activity and waits for
    the cancellation to be reported."""

    def __init__(self) -> None:
        self.cancel = False

    @workflow.run
    async def run(self, path: str) -> dict:
        handle = workflow.start_activity(
            "complete_async",
            path,
            start_to_close_timeout=datetime.timedelta(seconds=120),
            retry_policy=_RetryPolicy(maximum_attempts=1),
            cancellation_type=_ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        await workflow.wait_condition(lambda: self.cancel or handle.done())
        if not handle.done():
            handle.cancel()
        try:
            return {"result": await handle}
        except _ActivityError as e:
            cause = e.cause
            out: dict = {"error": type(e).__name__, "cause": type(cause).__name__}
            if cause is not None:
                out["message"] = cause.message
            if isinstance(cause, ApplicationError):
                out["type"] = cause.type
                out["non_retryable"] = cause.non_retryable
                out["details"] = list(cause.details)
            elif isinstance(cause, _CancelledError):
                out["details"] = list(cause.details)
            return out

    @workflow.signal(name="cancel_activity")
    def cancel_activity(self) -> None:
        self.cancel = True


WORKFLOWS += [AsyncActivity]
ACTIVITIES += [complete_async]


# ---------------------------------------------------------------- Lua activity worker specs (issue 14)
# (spec/activity_worker_spec.lua) The activities run on a Lua worker polling its own task
# queue; these workflows call them by name and report, from the Python side, what came back.


def _activity_error(e: _ActivityError) -> dict:
    cause = e.cause
    out: dict = {
        "error": type(e).__name__,
        "retry_state": e.retry_state.name if e.retry_state is not None else None,
        "cause": type(cause).__name__,
    }
    if cause is not None:
        out["message"] = cause.message
        out["stack_trace"] = cause.failure.stack_trace if cause.failure else None
    if isinstance(cause, ApplicationError):
        out["type"] = cause.type
        out["non_retryable"] = cause.non_retryable
        out["details"] = list(cause.details)
        out["next_retry_delay"] = (
            cause.next_retry_delay.total_seconds() if cause.next_retry_delay else None
        )
    elif isinstance(cause, _CancelledError):
        out["details"] = list(cause.details)
    elif isinstance(cause, _TimeoutError):
        out["timeout_type"] = cause.type.name if cause.type is not None else None
        out["last_heartbeat_details"] = list(cause.last_heartbeat_details)
    return out


def _lua_activity_options(spec: dict) -> dict:
    retry = spec.get("retry") or {}
    opts: dict = {
        "task_queue": spec["task_queue"],
        "start_to_close_timeout": datetime.timedelta(seconds=spec.get("start_to_close", 30)),
        "retry_policy": _RetryPolicy(
            initial_interval=datetime.timedelta(seconds=retry.get("initial_interval", 0.1)),
            backoff_coefficient=retry.get("backoff", 1.0),
            maximum_attempts=retry.get("maximum_attempts", 1),
            non_retryable_error_types=retry.get("non_retryable_error_types"),
        ),
    }
    if spec.get("heartbeat_timeout"):
        opts["heartbeat_timeout"] = datetime.timedelta(seconds=spec["heartbeat_timeout"])
    if spec.get("schedule_to_close"):
        opts["schedule_to_close_timeout"] = datetime.timedelta(seconds=spec["schedule_to_close"])
    if spec.get("cancel_on_signal"):
        opts["cancellation_type"] = _ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    return opts


@workflow.defn(name="CallLuaActivity")
class CallLuaActivity:
    """Runs the activity spec["activity"] with spec["args"] on the Lua worker's task queue
    spec["task_queue"] (timeouts and retry policy from the spec) and returns
    {"result": value, "types": [...], "echo_same": bool} or the ActivityError described
    (see _activity_error). With spec["cancel_on_signal"], signal "cancel" cancels the
    activity and waits for the cancellation to be reported."""

    def __init__(self) -> None:
        self.cancel = False

    @workflow.run
    async def run(self, spec: dict) -> dict:
        args = spec.get("args", [])
        handle = workflow.start_activity(
            spec["activity"], args=args, **_lua_activity_options(spec)
        )
        if spec.get("cancel_on_signal"):
            await workflow.wait_condition(lambda: self.cancel or handle.done())
            if not handle.done():
                handle.cancel()
        try:
            result = await handle
        except _ActivityError as e:
            return _activity_error(e)
        out: dict = {"result": result}
        if isinstance(result, dict) and "echo" in result:
            # Values that went to Lua and came back: compared here, on the Python side.
            echo = result["echo"]
            out["echo_same"] = echo == args and [type(v) for v in echo] == [type(v) for v in args]
            out["types"] = [type(v).__name__ for v in echo]
        return out

    @workflow.signal(name="cancel")
    def cancel_activity(self) -> None:
        self.cancel = True


@workflow.defn(name="FanOutLuaActivities")
class FanOutLuaActivities:
    """Schedules spec["count"] activities spec["activity"](i) at once on the Lua worker's
    task queue and returns their results in order."""

    @workflow.run
    async def run(self, spec: dict) -> list:
        opts = _lua_activity_options(spec)
        handles = [
            workflow.start_activity(spec["activity"], i, **opts) for i in range(spec["count"])
        ]
        return list(await asyncio.gather(*handles))


from temporalio.exceptions import TimeoutError as _TimeoutError  # noqa: E402

WORKFLOWS += [CallLuaActivity, FanOutLuaActivities]


# ---------------------------------------------------------------- main


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--address", default=os.environ.get("TEMPORAL_TEST_ADDRESS", "127.0.0.1:7233"))
    p.add_argument("--namespace", default=os.environ.get("TEMPORAL_TEST_NAMESPACE", "default"))
    p.add_argument(
        "--task-queue", default=os.environ.get("TEMPORAL_TEST_TASK_QUEUE", "lua-test-tq")
    )
    p.add_argument("--ready-file", default=None)
    opts = p.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    client = await Client.connect(opts.address, namespace=opts.namespace)
    async with Worker(
        client,
        task_queue=opts.task_queue,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        graceful_shutdown_timeout=datetime.timedelta(seconds=2),
    ):
        # Self-check: a full round trip through this very worker.
        got = await client.execute_workflow(
            "Greet",
            "testbed",
            id=f"testbed-selfcheck-{uuid.uuid4()}",
            task_queue=opts.task_queue,
            execution_timeout=datetime.timedelta(seconds=30),
        )
        if got != "Hello, testbed!":
            print(f"self-check returned {got!r}", file=sys.stderr, flush=True)
            return 1
        if opts.ready_file:
            with open(opts.ready_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        print("READY", flush=True)
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
