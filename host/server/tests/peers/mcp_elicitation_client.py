"""A person's MCP client that takes URL elicitations (the official MCP Python SDK's `Client`,
protocol 2026-07-28, which answers `InputRequiredResult` by showing the elicitations and
calling again).

Usage: mcp_elicitation_client.py URL TOKEN TOOL. Calls TOOL; each elicitation is printed as
{"step": "elicitation", ...} and the client waits for one line on stdin (the test acts as the
approver meanwhile), then accepts it. Prints the call's result last.
"""

import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def main(url, token, tool):
    async def on_elicit(ctx, params):
        emit(step="elicitation", mode=params.mode, url=getattr(params, "url", None), message=params.message)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        return types.ElicitResult(action="accept")

    progress = []

    async def on_progress(value, total, message):
        progress.append(message)

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0, read=120.0))
    async with http:
        client = Client(streamable_http_client(url, http_client=http), elicitation_callback=on_elicit)
        async with client:
            emit(step="connected", protocol=client.protocol_version)
            result = await client.call_tool(tool, {"name": "Ada"}, progress_callback=on_progress)
            emit(step="result", is_error=bool(result.is_error), structured=result.structured_content,
                 progress=progress)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
