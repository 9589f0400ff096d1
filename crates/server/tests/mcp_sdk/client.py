"""A real MCP client (the official `mcp` SDK, streamable HTTP) driving the platform's bridge.

Reads a plan from stdin: {"url": ".../workspaces/<id>/mcp", "token": "...", "calls":
[{"name": ..., "arguments": ...}]}. Initializes, lists the tools, makes each call in order and
prints one JSON object: {"protocolVersion", "serverInfo", "tools": [{name, inputSchema}],
"calls": [{"text": ...} | {"error": {"code", "message"}}]}. Exits 0 when the SDK accepted
every answer (a JSON-RPC error answer is an accepted answer).
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError


async def main() -> int:
    plan = json.load(sys.stdin)
    headers = {"Authorization": f"Bearer {plan['token']}"}
    out = {"calls": []}
    async with streamablehttp_client(plan["url"], headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await asyncio.wait_for(session.initialize(), 30)
            out["protocolVersion"] = init.protocolVersion
            out["serverInfo"] = init.serverInfo.model_dump(mode="json")
            tools = await asyncio.wait_for(session.list_tools(), 30)
            out["tools"] = [
                {"name": t.name, "description": t.description, "inputSchema": t.inputSchema}
                for t in tools.tools
            ]
            for call in plan.get("calls", []):
                try:
                    result = await asyncio.wait_for(
                        session.call_tool(call["name"], call.get("arguments")), 60
                    )
                    texts = [c.text for c in result.content if c.type == "text"]
                    out["calls"].append({"text": "".join(texts), "isError": result.isError})
                except McpError as e:
                    out["calls"].append(
                        {"error": {"code": e.error.code, "message": e.error.message}}
                    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
