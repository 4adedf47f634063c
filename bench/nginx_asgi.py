"""The Python column of the nginx benchmark (bench/nginx.sh): the two endpoints the
OpenResty example serves (examples/openresty/app.lua), as a raw ASGI app on the Python SDK
client (temporalio), run by uvicorn in one process.

  POST /workflows   {"workflow": name, "args": [...], "id": id, "task_queue": tq}
                    -> 201 {"id": ..., "run_id": ...}          (client.start_workflow)
  GET  /namespace   -> 200 {"name", "id", "state"}             (DescribeNamespace)

Errors: {"error": {"type", "message"}} with 400 / 409 / 502, as the Lua example.

  TEMPORAL_ADDRESS=127.0.0.1:7233 python -m uvicorn nginx_asgi:app --app-dir bench
"""
import json
import os

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.api.enums.v1 import NamespaceState
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

NAMESPACE = os.environ.get("TEMPORAL_NAMESPACE", "default")
TASK_QUEUE = os.environ.get("TEMPORAL_TASK_QUEUE", "openresty")
client: Client


async def reply(send, status, body):
    data = json.dumps(body, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def read_body(receive):
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


async def start(receive, send):
    try:
        req = json.loads(await read_body(receive) or b"null")
    except ValueError as e:
        return await reply(send, 400, {"error": {"type": "BadRequest", "message": "body: %s" % e}})
    if not isinstance(req, dict) or not isinstance(req.get("workflow"), str):
        return await reply(send, 400, {"error": {"type": "BadRequest", "message": 'body must be {"workflow": name, ...}'}})
    try:
        h = await client.start_workflow(req["workflow"], args=req.get("args") or [], id=req["id"],
                                        task_queue=req.get("task_queue") or TASK_QUEUE)
    except WorkflowAlreadyStartedError as e:
        return await reply(send, 409, {"error": {"type": "WorkflowAlreadyStartedError", "message": str(e)}})
    except RPCError as e:
        return await reply(send, 502, {"error": {"type": "RPCError", "message": str(e)}})
    await reply(send, 201, {"id": h.id, "run_id": h.result_run_id})


async def namespace(send):
    try:
        ns = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=NAMESPACE))
    except RPCError as e:
        return await reply(send, 502, {"error": {"type": "RPCError", "message": str(e)}})
    info = ns.namespace_info
    await reply(send, 200, {"name": info.name, "id": info.id,
                            "state": NamespaceState.Name(info.state).removeprefix("NAMESPACE_STATE_")})


async def app(scope, receive, send):
    global client
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                client = await Client.connect(os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"), namespace=NAMESPACE)
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if path == "/workflows" and method == "POST":
        return await start(receive, send)
    if path == "/namespace" and method == "GET":
        return await namespace(send)
    await reply(send, 404, {"error": {"type": "NotFound", "message": "%s %s" % (method, path)}})
