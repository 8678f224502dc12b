"""An MCP client that connects the way Claude or VS Code do: the official MCP Python SDK's
OAuth support (PyPI `mcp`, `OAuthClientProvider`), starting from a bare 401.

Usage: mcp_oauth_client.py URL COOKIE AGENT. The SDK discovers the protected resource and
authorization server metadata, registers itself (RFC 7591) and sends "the browser" to the
authorization endpoint; the browser here is an HTTP client holding the person's signed-in
session COOKIE, which reads the consent page, picks AGENT (`new` for a new agent) and allows.
Prints one JSON line per step on stdout.
"""

import asyncio
import html
import json
import re
import sys
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT = "http://127.0.0.1:53682/callback"


def emit(**fields):
    print(json.dumps(fields), flush=True)


class Memory(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """The person's browser: their session cookie, the consent page, their choice."""

    def __init__(self, cookie, agent):
        self.cookie, self.agent, self.url = cookie, agent, None

    async def open(self, url):
        self.url = url
        emit(step="redirect", url=url)

    async def consent(self):
        async with httpx2.AsyncClient(headers={"Cookie": self.cookie}, follow_redirects=False) as http:
            page = await http.get(self.url)
            assert page.status_code == 200, page.text
            fields = {html.unescape(n): html.unescape(v) for n, v in
                      re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
            agents = re.findall(r'name="agent" value="([^"]+)"', page.text)
            emit(step="consent-page", agents=agents, fields=sorted(fields))
            fields.update(agent=self.agent, decision="allow")
            action = urlparse(self.url)._replace(query="").geturl()
            answer = await http.post(action, data=fields)
            assert answer.status_code == 303, answer.text
            back = answer.headers["location"]
        assert back.startswith(REDIRECT), back
        q = {k: v[0] for k, v in parse_qs(urlparse(back).query).items()}
        emit(step="callback", params=sorted(q))
        return AuthorizationCodeResult(code=q["code"], state=q.get("state"), iss=q.get("iss"))


def result_json(result):
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "type", "") == "text"],
    }


async def main(url, cookie, agent):
    storage, browser = Memory(), Browser(cookie, agent)
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="Inspector <b>test</b>",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.consent,
    )
    http = httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30.0, read=60.0))
    async with http, streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            emit(step="connected", client_id=storage.client.client_id,
                 access_token=storage.tokens.access_token, refresh_token=storage.tokens.refresh_token,
                 scope=storage.tokens.scope, expires_in=storage.tokens.expires_in)
            tools = await session.list_tools()
            emit(step="list", tools=sorted(t.name for t in tools.tools))
            greet = await session.call_tool("hello.greet", {"name": "Ada"})
            emit(step="allowed", **result_json(greet))
            lookup = await session.call_tool("billing.lookup-customer", {"customer_id": "42"})
            emit(step="person-not-allowed", **result_json(lookup))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
