"""A local MCP client that spawns `airlock mcp --agent NAME` and talks over stdio (official SDK).

Usage: mcp_stdio_client.py AIRLOCK_BINARY DATA_DIR AGENT. Prints one JSON object with the results.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(binary, data_dir, agent):
    params = StdioServerParameters(command=binary, args=["mcp", "--agent", agent, "--data-dir", data_dir])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            greet = await session.call_tool("hello.greet", {"name": "Grace"})
            denied = await session.call_tool("billing.refund", {"customer_id": "1", "amount": "1.00", "currency": "EUR"})
            print(json.dumps({
                "protocol": str(init.protocol_version),
                "tools": sorted(t.name for t in tools.tools),
                "greet": greet.structured_content,
                "denied": {"is_error": bool(denied.is_error), "structured": denied.structured_content},
            }), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
