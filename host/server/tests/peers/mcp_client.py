"""An agent that reaches Airlock through the official MCP Python SDK (PyPI `mcp`).

Usage: mcp_client.py URL TOKEN. Prints one JSON line per step on stdout; where the test
(the second actor) must act, prints {"step": "...", "waiting": true} and reads one line
from stdin before going on.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


def emit(**fields):
    print(json.dumps(fields), flush=True)


def result_json(result):
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "type", "") == "text"],
    }


async def wait_for_test():
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def main(url, token):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0, read=120.0))
    async with http, streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            emit(step="initialize", protocol=str(init.protocol_version), server=init.server_info.name)

            tools = await session.list_tools()
            emit(step="list", tools=sorted(t.name for t in tools.tools),
                 schemas={t.name: t.input_schema for t in tools.tools},
                 outputs={t.name: t.output_schema for t in tools.tools})

            greet = await session.call_tool("hello.greet", {"name": "Ada"})
            emit(step="allowed", **result_json(greet))

            forbidden = await session.call_tool("billing.lookup-customer", {"customer_id": "42"})
            emit(step="forbidden", **result_json(forbidden))

            progress = []

            async def on_progress(value, total, message):
                progress.append(message)

            refund = asyncio.create_task(session.call_tool(
                "billing.refund", {"customer_id": "42", "amount": "120.00", "currency": "EUR"},
                progress_callback=on_progress))
            emit(step="refund-started", waiting=True)
            await wait_for_test()  # the CFO decides
            result = await refund
            emit(step="refund", progress=progress, **result_json(result))

            emit(step="before-revoke", waiting=True)
            await wait_for_test()  # an admin revokes hello.greet
            tools = await session.list_tools()
            emit(step="after-revoke", tools=sorted(t.name for t in tools.tools))
            greet = await session.call_tool("hello.greet", {"name": "Ada"})
            emit(step="revoked-call", **result_json(greet))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
