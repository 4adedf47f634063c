"""A Python SDK worker whose data converter encrypts payloads as the Python SDK's
encryption sample does (AES-256-GCM; metadata encoding=binary/encrypted and
encryption-key-id; data = 12-byte nonce + ciphertext + tag). The Lua side is codec.lua.

    python worker.py --address 127.0.0.1:7233 --task-queue encryption-tq [--ready-file F]
"""
import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from typing import Iterable, List

from temporalio import workflow

# The workflow sandbox re-imports this module: the codec's imports pass through it.
with workflow.unsafe.imports_passed_through():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from temporalio.api.common.v1 import Payload
    from temporalio.client import Client
    import temporalio.converter
    from temporalio.converter import PayloadCodec
    from temporalio.worker import Worker

KEY = b"test-key-test-key-test-key-test!"
KEY_ID = "test-key-id"


class EncryptionCodec(PayloadCodec):
    def __init__(self, key_id: str = KEY_ID, key: bytes = KEY) -> None:
        self.key_id = key_id
        self.aes = AESGCM(key)

    async def encode(self, payloads: Iterable[Payload]) -> List[Payload]:
        out = []
        for p in payloads:
            nonce = os.urandom(12)
            out.append(
                Payload(
                    metadata={
                        "encoding": b"binary/encrypted",
                        "encryption-key-id": self.key_id.encode(),
                    },
                    data=nonce + self.aes.encrypt(nonce, p.SerializeToString(), None),
                )
            )
        return out

    async def decode(self, payloads: Iterable[Payload]) -> List[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding", b"").decode() != "binary/encrypted":
                out.append(p)
                continue
            key_id = p.metadata.get("encryption-key-id", b"").decode()
            if key_id != self.key_id:
                raise ValueError(f"unrecognized key id {key_id!r}, this codec has {self.key_id!r}")
            out.append(Payload.FromString(self.aes.decrypt(p.data[:12], p.data[12:], None)))
        return out


def data_converter() -> temporalio.converter.DataConverter:
    return dataclasses.replace(
        temporalio.converter.DataConverter.default, payload_codec=EncryptionCodec()
    )


@workflow.defn(name="EncryptedGreeting")
class EncryptedGreeting:
    """Returns a greeting and what it received, so the caller sees the worker read the
    decrypted arguments."""

    @workflow.run
    async def run(self, name: str, details: dict) -> dict:
        return {"greeting": f"Hello, {name}!", "received": details, "by": "python"}


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--address", default="127.0.0.1:7233")
    p.add_argument("--namespace", default="default")
    p.add_argument("--task-queue", default="encryption-tq")
    p.add_argument("--ready-file", default=None)
    opts = p.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    client = await Client.connect(
        opts.address, namespace=opts.namespace, data_converter=data_converter()
    )
    async with Worker(client, task_queue=opts.task_queue, workflows=[EncryptedGreeting]):
        if opts.ready_file:
            with open(opts.ready_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        print("READY", flush=True)
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
