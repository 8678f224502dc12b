"""An agent with a wrong token, through the official MCP Python SDK (PyPI `mcp`).

Usage: mcp_bad_token.py URL TOKEN. Prints one JSON line: the error the SDK raised on
`initialize`, and the `error_description` the SDK's own WWW-Authenticate parser reads.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.auth.utils import extract_field_from_www_auth
from mcp.client.streamable_http import streamable_http_client


async def main(url, token):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
    error = None
    try:
        async with http, streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
    except BaseException as e:  # the SDK may wrap it in an exception group
        while isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        error = str(e)
    async with httpx2.AsyncClient() as raw:
        resp = await raw.post(url, headers={"Authorization": f"Bearer {token}"}, json={})
    print(json.dumps({"error": error, "error_description": extract_field_from_www_auth(resp, "error_description")}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
