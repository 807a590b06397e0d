"""A real MCP server for the end-to-end tests: the official Python SDK's `MCPServer`
(stateless Streamable HTTP at `/mcp`) run by uvicorn on a thread, on 127.0.0.1, behind the
filter's Envoy. It records what it *received* (every HTTP request: method, path, headers,
the exact body bytes, and the response status and content type) and what it *executed*
(every tool that ran, with its arguments), so a test can assert that a refused call never
reached it and that the body the filter decided on is the body the server parsed.

A ticket desk:
  tools       search_tickets(q) and get_ticket(id) (read), create_ticket(title) (write),
              delete_ticket(id) (admin)
  resources   tickets://stats, and the template tickets://{id}
  prompts     triage(ticket_id)

Modes: `json_response=True` answers every request as `application/json`. With
`json_response=False` the legacy (2025-11-25) stateless transport answers POSTs as
`text/event-stream`; the 2026-07-28 handler streams only once the handler emits something
(it sends JSON otherwise), so this mode also emits a request-scoped progress notification
before every request's result: the 2026-07-28 answers (lists included) are then
`text/event-stream` too."""

import asyncio
import contextlib
import threading

import uvicorn
from mcp.server import MCPServer
from mcp.server.caching import CacheHint
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ProgressNotification, ProgressNotificationParams

from harness.servers import free_port
from harness.wait import wait_until

READY_TIMEOUT_S = 15
TOOLS = ("search_tickets", "get_ticket", "create_ticket", "delete_ticket")
READ_TOOLS = ("search_tickets", "get_ticket")
WRITE_TOOLS = ("create_ticket",)
ADMIN_TOOLS = ("delete_ticket",)


class Recording:
    """ASGI middleware: records each HTTP request (and the status and content type it was
    answered with) in `seen`, then hands the app the very bytes it read."""

    def __init__(self, app, seen):
        self.app, self.seen = app, seen

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {}
        for k, v in scope["headers"]:
            headers.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
        record = {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode("latin-1"),
                  "headers": headers, "body": b"".join(chunks), "status": None, "content_type": None}
        self.seen.append(record)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": record["body"], "more_body": False}
            return await receive()

        async def watch(message):
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-type":
                        record["content_type"] = v.decode("latin-1")
            await send(message)

        await self.app(scope, replay, watch)


class StreamEveryAnswer:
    """`MCPServer` middleware: a request-scoped progress notification before each request
    runs, so the 2026-07-28 handler commits to `text/event-stream`."""

    async def __call__(self, ctx, call_next):
        if ctx.request_id is not None and ctx.method not in ("initialize",):
            note = ProgressNotification(params=ProgressNotificationParams(
                progress_token=f"harness-{ctx.request_id}", progress=0.5, message=f"{ctx.method} under way"))
            await ctx.session.send_notification(note, related_request_id=ctx.request_id)
        return await call_next(ctx)


def tickets_server(executed, stream=False):
    """The ticket desk as an `MCPServer`; each tool appends `(name, arguments)` to `executed`."""
    # Lists say "public" (shared caches may serve them to anyone): true of the full list,
    # and what a filtered list must no longer say.
    public = {m: CacheHint(ttl_ms=0, scope="public") for m in ("tools/list", "resources/list", "prompts/list")}
    mcp = MCPServer("Tickets", cache_hints=public, middleware=[StreamEveryAnswer()] if stream else None, log_level="WARNING")

    @mcp.tool(description="Search tickets (read).")
    def search_tickets(q: str) -> str:
        executed.append(("search_tickets", {"q": q}))
        return f"3 tickets match {q!r}"

    @mcp.tool(description="One ticket (read).")
    def get_ticket(id: int) -> str:
        executed.append(("get_ticket", {"id": id}))
        return f"ticket {id}: printer on fire"

    @mcp.tool(description="Open a ticket (write).")
    def create_ticket(title: str) -> str:
        executed.append(("create_ticket", {"title": title}))
        return f"created ticket 42: {title}"

    @mcp.tool(description="Delete a ticket (admin).")
    def delete_ticket(id: int) -> str:
        executed.append(("delete_ticket", {"id": id}))
        return f"deleted ticket {id}"

    @mcp.resource("tickets://stats", description="Counts by state.")
    def stats() -> str:
        executed.append(("resource", {"uri": "tickets://stats"}))
        return '{"open": 3, "closed": 9}'

    @mcp.resource("tickets://{id}", description="A ticket as a resource.")
    def ticket(id: str) -> str:
        executed.append(("resource", {"uri": f"tickets://{id}"}))
        return f"ticket {id}"

    @mcp.prompt(description="Triage a ticket.")
    def triage(ticket_id: str) -> str:
        executed.append(("prompt", {"name": "triage", "ticket_id": ticket_id}))
        return f"Triage ticket {ticket_id}: who owns it, how urgent is it?"

    return mcp


class _Uvicorn(uvicorn.Server):
    """uvicorn on a thread: no signal handlers (they belong to the main thread)."""

    def install_signal_handlers(self):  # older uvicorn; newer ones skip non-main threads
        pass


class McpUpstream:
    """The ticket desk on 127.0.0.1:`port`, path `/mcp`, for a `with` block. As the echo
    `Upstream`: `.port`, and `.server.seen` (here: one record per HTTP request, see
    `Recording`). `.server.executed` lists `(tool, arguments)` for each tool, resource read
    and prompt that ran. `json_response`: JSON answers; False: SSE (see the module doc)."""

    def __init__(self, json_response=True):
        self.port = free_port()
        self.json_response = json_response
        self.seen, self.executed = [], []
        self.mcp = tickets_server(self.executed, stream=not json_response)
        app = self.mcp.streamable_http_app(
            streamable_http_path="/mcp", stateless_http=True, json_response=json_response,
            # Behind Envoy the Host header is the client's: the gateway is the guard.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        config = uvicorn.Config(Recording(app, self.seen), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", access_log=False)
        self.server = _Uvicorn(config)
        self.server.seen, self.server.executed = self.seen, self.executed
        self.thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/mcp"

    def posts(self):
        """The records of the POSTs the server received."""
        return [r for r in self.seen if r["method"] == "POST"]

    def clear(self):
        self.seen.clear()
        self.executed.clear()

    @contextlib.contextmanager
    def extra_tool(self, name, description):
        """One more tool (e.g. with a description big enough to make the list unfilterable)
        for a `with` block."""
        def fn() -> str:
            self.executed.append((name, {}))
            return name
        self.mcp.add_tool(fn, name=name, description=description)
        try:
            yield
        finally:
            self.mcp.remove_tool(name)

    def __enter__(self):
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True,
                                       name=f"mcp-server-{self.port}")
        self.thread.start()
        try:
            wait_until(lambda: self.server.started or not self.thread.is_alive(), READY_TIMEOUT_S,
                       f"the MCP server on 127.0.0.1:{self.port}")
            if not self.server.started:
                raise RuntimeError(f"the MCP server on 127.0.0.1:{self.port} did not start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
