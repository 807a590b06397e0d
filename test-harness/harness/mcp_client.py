"""The official Python MCP SDK's `Client` as the agent in the end-to-end tests, plus raw
JSON-RPC requests for what the SDK would never send (a batch, a mismatched header, a
duplicate member) or where it hides the HTTP answer.

Two eras: `"legacy"` is the 2025-11-25 `initialize` handshake (only `MCP-Protocol-Version`
mirrored, after the handshake), `"2026-07-28"` the per-request `_meta` envelope with
`MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`. Every helper opens a fresh client
with the response cache off (`cache=None`), so one agent's list never answers another's,
and records every HTTP exchange the SDK made (status and headers, through an httpx2
response hook): the SDK turns a refusal into an `MCPError` and keeps the status and
`WWW-Authenticate` to itself."""

import asyncio
import base64
import dataclasses
import json

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import encode_header_value

MODES = ("legacy", "2026-07-28")
MODERN = "2026-07-28"
LEGACY_VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


def url(port, path="/mcp"):
    return f"http://127.0.0.1:{port}{path}"


@dataclasses.dataclass
class Exchange:
    """One HTTP exchange the SDK made: the request it sent (method, JSON-RPC method, body
    bytes) and the answer's status and headers (names lower-cased)."""
    method: str
    mcp_method: str | None
    body: bytes
    status: int
    headers: dict


@dataclasses.dataclass
class Outcome:
    """What an SDK call came to: `result` (the SDK's result model) or `error` (the
    `MCPError` it raised: `.code`, `.message`, `.data`), and every HTTP exchange."""
    result: object = None
    error: MCPError | None = None
    exchanges: list = dataclasses.field(default_factory=list)

    @property
    def refused(self):
        """The exchange that carried the refusal (the first 4xx/5xx), or None."""
        return next((x for x in self.exchanges if x.status >= 400), None)

    def __repr__(self):
        return (f"<Outcome result={self.result!r:.300} error={self.error!r} "
                f"exchanges={[(x.mcp_method, x.status) for x in self.exchanges]}>")


async def _run(port, token, mode, work, path="/mcp"):
    exchanges = []

    async def hook(response):
        req = response.request
        exchanges.append(Exchange(req.method, req.headers.get("mcp-method") or _body_method(req),
                                  bytes(req.content), response.status_code,
                                  {k.lower(): v for k, v in response.headers.items()}))

    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    out = Outcome(exchanges=exchanges)
    async with httpx2.AsyncClient(headers=headers, event_hooks={"response": [hook]}, timeout=20) as http:
        try:
            async with Client(streamable_http_client(url(port, path), http_client=http), mode=mode,
                              cache=None) as client:
                out.result = await work(client)
        except (MCPError, BaseExceptionGroup) as e:
            # A refused `initialize` surfaces from the SDK's task groups, wrapped.
            out.error = _the_mcp_error(e)
            if out.error is None:
                raise
    return out


def _the_mcp_error(exc):
    """The one `MCPError` in `exc` (itself, or inside nested exception groups), or None."""
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = [e for e in map(_the_mcp_error, exc.exceptions) if e is not None]
        return found[0] if len(found) == 1 else None
    return None


def _body_method(req):
    try:
        return json.loads(req.content).get("method")
    except (ValueError, AttributeError):
        return None


def run(port, token, mode, work, path="/mcp"):
    """Runs `await work(client)` with a fresh SDK client connected through `port` as the
    bearer of `token` (None: no Authorization header) in `mode`. -> Outcome."""
    return asyncio.run(_run(port, token, mode, work, path))


def list_tools(port, token, mode):
    """-> Outcome whose result is the `ListToolsResult` (`.tools`, `.cache_scope`)."""
    return run(port, token, mode, lambda c: c.list_tools())


def tool_names(port, token, mode):
    """The names `tools/list` showed this agent (raises when it was refused)."""
    out = list_tools(port, token, mode)
    assert out.error is None, out
    return sorted(t.name for t in out.result.tools)


def call_tool(port, token, mode, name, arguments):
    """-> Outcome whose result is the `CallToolResult`."""
    return run(port, token, mode, lambda c: c.call_tool(name, arguments))


def list_resources(port, token, mode):
    return run(port, token, mode, lambda c: c.list_resources())


def read_resource(port, token, mode, uri):
    return run(port, token, mode, lambda c: c.read_resource(uri))


def list_prompts(port, token, mode):
    return run(port, token, mode, lambda c: c.list_prompts())


def get_prompt(port, token, mode, name, arguments):
    return run(port, token, mode, lambda c: c.get_prompt(name, arguments))


# ---- Raw JSON-RPC requests ------------------------------------------------------------

NAME_FIELD = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def body(method, params=None, id=1, mode=MODERN):
    """A JSON-RPC request as the SDK sends it in `mode` (2026-07-28: with the `_meta`
    envelope), as compact JSON text."""
    params = dict(params or {})
    if mode == MODERN:
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN,
                           "io.modelcontextprotocol/clientCapabilities": {},
                           "io.modelcontextprotocol/clientInfo": {"name": "agent-iam-tests", "version": "1"}}
    msg = {"jsonrpc": "2.0", "id": id, "method": method}
    if params:
        msg["params"] = params
    return json.dumps(msg, separators=(",", ":"))


def headers(method, name=None, mode=MODERN, **extra):
    """The headers the SDK sends with `method` in `mode` (2026-07-28: the mirrored
    `Mcp-Method` and, for the name-bearing methods, `Mcp-Name`, encoded as the SDK does);
    `extra` adds or, with None, removes (`mcp_name=None`; `_` for `-`)."""
    h = {"content-type": "application/json", "accept": ACCEPT}
    if mode == MODERN:
        h["mcp-protocol-version"] = MODERN
        h["mcp-method"] = method
        if name is not None:
            h["mcp-name"] = encode_header_value(name)
    elif mode == "legacy":
        h["mcp-protocol-version"] = LEGACY_VERSION
    for k, v in extra.items():
        k = k.replace("_", "-")
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    return h


def b64_header(value):
    """`value` in the `=?base64?...?=` form, whatever it is."""
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


def rpc(client, token, method, params=None, mode=MODERN, id=1, raw=None, **extra):
    """POSTs one JSON-RPC request with `harness.Client` (`raw`: these exact body bytes
    instead) and the SDK's headers for it. -> harness.Response."""
    name = (params or {}).get(NAME_FIELD.get(method, ""), None)
    data = raw if raw is not None else body(method, params, id=id, mode=mode).encode()
    return client.request("/mcp", method="POST", token=token, body=data, headers=headers(method, name, mode, **extra))


def messages(response):
    """The JSON-RPC messages of a response: its JSON body, or the `data` of each SSE event."""
    ctype = response.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        out = []
        for event in response.body.decode().replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:"))
            if data:
                out.append(json.loads(data))
        return out
    return [json.loads(response.body)] if response.body else []


def reply(response):
    """The JSON-RPC response (a `result` or an `error`) among the response's messages."""
    found = [m for m in messages(response) if "result" in m or "error" in m]
    assert len(found) == 1, (response, found)
    return found[0]
