"""A real A2A agent built with a2a-sdk's server classes, for the proxy's conformance tests.

Usage: python3 agent.py PORT

Listens on 127.0.0.1:PORT and serves, all from the SDK:
- JSON-RPC at `/` for the A2A 1.0 method names (`SendMessage`, `SendStreamingMessage`, ...)
  and, through the SDK's v0.3 compatibility adapter, the 0.3 names (`message/send`,
  `message/stream`, ...). The SDK picks the 1.0 handlers only when the request carries the
  header `A2A-Version: 1.0`; without the header a request is taken as 0.3.
- its agent card at `/.well-known/agent-card.json`.

For a user message with text T, the agent runs a task and publishes, 0.3 s apart:
1. the Task, state `submitted`;
2. a status update, state `working`;
3. an artifact update whose text is `echo: T`;
4. a final status update, state `completed`, whose message text is `echo: T`.
`message/send` answers with the aggregated Task (state `completed`, the artifact and the
final status message both hold `echo: T`); `message/stream` sends each of the four events
as its own SSE event.

Prints `READY <port>` on stdout once the socket listens.
"""

import asyncio
import socket
import sys

import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Role,
    TaskState,
)
from starlette.applications import Starlette

# Time between two events of a task, so that streaming can be told from buffering.
STEP = 0.3


class EchoExecutor(AgentExecutor):
    """Echoes the user's text as a task in four steps."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await asyncio.sleep(STEP)
        await updater.start_work()
        await asyncio.sleep(STEP)
        await updater.add_artifact(
            [new_text_part(f"echo: {text}")], name="echo", last_chunk=True
        )
        await asyncio.sleep(STEP)
        await updater.complete(
            new_text_message(
                f"echo: {text}",
                role=Role.ROLE_AGENT,
                context_id=task.context_id,
                task_id=task.id,
            )
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task = context.current_task
        if task is not None:
            await TaskUpdater(event_queue, task.id, task.context_id).cancel()


def card(port: int) -> AgentCard:
    url = f"http://127.0.0.1:{port}/"
    return AgentCard(
        name="sdk-echo",
        description="Echoes text back, in steps (a2a-sdk test agent)",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(protocol_binding="JSONRPC", url=url, protocol_version="1.0"),
            AgentInterface(protocol_binding="JSONRPC", url=url, protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id="echo",
                name="echo",
                description="Answers `echo: <text>`",
                tags=["test"],
            )
        ],
    )


def app(port: int) -> Starlette:
    agent_card = card(port)
    handler = DefaultRequestHandler(
        agent_executor=EchoExecutor(),
        task_store=InMemoryTaskStore(),
        agent_card=agent_card,
    )
    routes = create_agent_card_routes(agent_card) + create_jsonrpc_routes(
        handler, rpc_url="/", enable_v0_3_compat=True
    )
    return Starlette(routes=routes)


async def main(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    # Listening from here on: connections wait in the backlog until uvicorn accepts them.
    sock.listen(128)
    server = uvicorn.Server(
        uvicorn.Config(app(port), log_level="warning", lifespan="off")
    )
    print(f"READY {port}", flush=True)
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: agent.py PORT")
    asyncio.run(main(int(sys.argv[1])))
