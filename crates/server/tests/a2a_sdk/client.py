"""An A2A client built with a2a-sdk's client classes, for the proxy's conformance tests.

Usage: python3 client.py URL MODE TEXT [--token TOKEN] [--protocol 0.3|1.0] [--timeout S]

`--timeout` bounds the whole exchange (default 60 s): past it the client fails.

URL is where JSON-RPC requests are POSTed (our proxy: `http://HOST/workspaces/<id>/a2a`).
No agent card is fetched: the client is made from a card built here that names URL as a
JSON-RPC interface of the chosen protocol version. With `--protocol 0.3` (the default) the
SDK's `CompatJsonRpcTransport` sends `message/send` / `message/stream`; with `1.0` its
`JsonRpcTransport` sends `SendMessage` / `SendStreamingMessage` and the header
`A2A-Version: 1.0`.

Modes (each prints JSON lines on stdout, flushed one by one):
- `send TEXT`: one line `{"event": <answer>, "kind": ..., "text": ..., "state": ...}`.
- `stream TEXT`: one line per event as it arrives, with `t`, a monotonic time in seconds,
  then a closing line `{"done": true, "events": N}`.
- `send-expect-submitted TEXT`: the answer must be a Task in state `submitted`; one line
  `{"task_id": ..., "state": "submitted"}`.

Exits 0 only when the SDK accepted every answer (and, for `send-expect-submitted`, the answer
was a submitted Task). On any error (the SDK refusing an answer, a JSON-RPC error, an HTTP
error) it prints `{"error": ..., "type": ...}` and exits 1.
"""

import argparse
import asyncio
import json
import sys
import time
import uuid

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from google.protobuf.json_format import MessageToDict


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def card_for(url: str, protocol: str, streaming: bool) -> AgentCard:
    """A card naming `url` as a JSON-RPC interface: what an agent card would say of it."""
    return AgentCard(
        name="proxy",
        description="the workspace behind the proxy",
        version="0",
        supported_interfaces=[
            AgentInterface(protocol_binding="JSONRPC", url=url, protocol_version=protocol)
        ],
        capabilities=AgentCapabilities(streaming=streaming),
    )


def request(text: str) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text=text)],
        )
    )


def state_name(state: int) -> str:
    """`TASK_STATE_SUBMITTED` -> `submitted` (the 0.3 spelling)."""
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")


def texts(parts) -> list[str]:
    return [p.text for p in parts if p.HasField("text")]


def describe(event: StreamResponse) -> dict:
    """The event as the SDK parsed it, with its kind, state and texts picked out."""
    out: dict = {"event": MessageToDict(event)}
    kind = event.WhichOneof("payload")
    out["kind"] = kind
    if kind == "task":
        out["task_id"] = event.task.id
        out["state"] = state_name(event.task.status.state)
        out["texts"] = texts(event.task.status.message.parts) + [
            t for a in event.task.artifacts for t in texts(a.parts)
        ]
    elif kind == "message":
        out["texts"] = texts(event.message.parts)
    elif kind == "status_update":
        out["task_id"] = event.status_update.task_id
        out["state"] = state_name(event.status_update.status.state)
        out["texts"] = texts(event.status_update.status.message.parts)
    elif kind == "artifact_update":
        out["task_id"] = event.artifact_update.task_id
        out["texts"] = texts(event.artifact_update.artifact.parts)
    return out


async def run(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    streaming = args.mode == "stream"
    async with httpx.AsyncClient(headers=headers, timeout=args.timeout) as http:
        factory = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http))
        client = factory.create(card_for(args.url, args.protocol, streaming))
        count = 0
        async for event in client.send_message(request(args.text)):
            count += 1
            line = describe(event)
            if streaming:
                line["t"] = time.monotonic()
            emit(line)
            if args.mode == "send-expect-submitted":
                if line["kind"] != "task" or line.get("state") != "submitted":
                    emit({"error": "the answer is not a Task in state submitted",
                          "type": "UnexpectedAnswer"})
                    return 1
                emit({"task_id": line["task_id"], "state": line["state"]})
        if streaming:
            emit({"done": True, "events": count})
        if count == 0:
            emit({"error": "no answer", "type": "NoAnswer"})
            return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("mode", choices=["send", "stream", "send-expect-submitted"])
    parser.add_argument("text")
    parser.add_argument("--token")
    parser.add_argument("--protocol", choices=["0.3", "1.0"], default="0.3")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        return asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except (TimeoutError, asyncio.TimeoutError):
        emit({"error": f"no complete answer within {args.timeout} s", "type": "Timeout"})
        return 1
    except Exception as e:  # the SDK's refusals come as many types: report any of them
        emit({"error": str(e), "type": type(e).__name__})
        print(f"a2a-sdk client error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
