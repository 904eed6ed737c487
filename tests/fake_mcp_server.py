"""A stdio MCP server for the client tests (standard library only).

    python tests/fake_mcp_server.py [--mode MODE] [--log PATH]

It speaks the real wire format: newline-delimited JSON-RPC 2.0 on
stdin/stdout. Tools (listed two per page, so `tools/list` paginates):

    echo(text)      -> the text
    add(a, b)       -> the sum as text, plus structuredContent {"sum": ...}
    structured()    -> only structuredContent, no text items
    fail()          -> isError true with a text
    slow(seconds)   -> sleeps, then "slept"
    log_noise()     -> junk on stdout and a notification first, then "quiet now"
    mixed()         -> text, an image and an embedded resource
    ping_status()   -> what the server's own `ping` request got back

An unknown tool is a JSON-RPC error (-32602). Calls run in threads, so slow
calls answer after fast ones. Right after `notifications/initialized` the
server sends the client a `ping` and an unsupported `sampling/createMessage`
request and records the answers.

Modes (faults):
    normal          as above
    crash-on-call   on tools/call: write to stderr and exit with code 3
    crash-on-start  write to stderr and exit with code 1 before reading
    no-init         never answer `initialize`
    garbage         before every answer write a non-JSON line, a JSON array
                    of numbers and an answer to an id nobody asked for
    stubborn        ignore SIGTERM and stdin EOF (only SIGKILL stops it)

--log PATH appends every received message (one JSON per line) and events
({"event": ...}) so tests can check what the client sent.

--child-pid-file PATH starts a grandchild process (a Python sleeping 300 s,
in the server's process group, as `npx` starts `node`) before serving, and
writes {"server": pid, "child": pid} to PATH once it runs. With
--stubborn-child the grandchild ignores SIGTERM. The server never stops it:
whoever stops the server must stop its process group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

_CHILD = """
import signal, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(300)
"""


def start_child(pid_file: str, stubborn: bool) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, "stubborn" if stubborn else "plain"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert child.stdout is not None
    child.stdout.readline()  # its SIGTERM disposition is set: safe to report
    child.stdout.close()
    temp = pid_file + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump({"server": os.getpid(), "child": child.pid}, f)
    os.replace(temp, pid_file)  # readers never see half a file

PAGE_SIZE = 2
TOOLS = [
    {"name": "echo", "description": "Echo the text back.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                     "required": ["text"]}},
    {"name": "add", "description": "Add two numbers.",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "number"},
                                                      "b": {"type": "number"}},
                     "required": ["a", "b"]},
     "outputSchema": {"type": "object", "properties": {"sum": {"type": "number"}}}},
    {"name": "structured", "description": "Only structured content.",
     "inputSchema": {"type": "object"}},
    {"name": "fail", "description": "Always fails.", "inputSchema": {"type": "object"}},
    {"name": "slow", "description": "Sleep for a while.",
     "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}},
    {"name": "log_noise", "description": "Writes junk to stdout first.",
     "inputSchema": {"type": "object"}},
    {"name": "mixed", "description": "Text, image and resource content.",
     "inputSchema": {"type": "object"}},
    {"name": "ping_status", "description": "What our ping got back.",
     "inputSchema": {"type": "object"}},
]


class Server:
    def __init__(self, mode: str, log_path: str | None) -> None:
        self.mode = mode
        self.log_path = log_path
        self.out_lock = threading.Lock()
        self.log_lock = threading.Lock()
        # id of each request we sent the client -> its answer (None: not yet)
        self.sent: dict[str, Any] = {}

    # -- io ---------------------------------------------------------------
    def write_raw(self, data: bytes) -> None:
        with self.out_lock:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    def send(self, message: dict[str, Any]) -> None:
        prefix = b""
        if self.mode == "garbage" and "id" in message and "method" not in message:
            prefix = (b"garbage: not json at all\n[1, 2, 3]\n"
                      b'{"jsonrpc":"2.0","id":987654,"result":{}}\n')
        self.write_raw(prefix + json.dumps(message).encode() + b"\n")

    def log(self, entry: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        with self.log_lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def result(self, request_id: Any, result: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def error(self, request_id: Any, code: int, message: str) -> None:
        self.send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})

    # -- loop -------------------------------------------------------------
    def run(self) -> None:
        if self.mode == "crash-on-start":
            sys.stderr.write("fatal: missing GITHUB_TOKEN\n")
            sys.stderr.flush()
            sys.exit(1)
        if self.mode == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for line in sys.stdin.buffer:
            try:
                message = json.loads(line)
            except ValueError:
                self.log({"event": "bad-json", "line": line.decode("utf-8", "replace")})
                continue
            self.log(message)
            self.handle(message)
        self.log({"event": "stdin-eof"})
        if self.mode == "stubborn":
            while True:
                time.sleep(1)

    def handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:  # an answer to one of our requests
            self.sent[str(message.get("id"))] = message
            self.log({"event": "client-answered", "message": message})
        elif method == "initialize":
            if self.mode != "no-init":
                self.initialize(message)
        elif method == "notifications/initialized":
            self.request_client("srv-ping-1", "ping")
            self.request_client("srv-sample-2", "sampling/createMessage")
        elif method == "tools/list":
            self.list_tools(message)
        elif method == "tools/call":
            if self.mode == "crash-on-call":
                sys.stderr.write("starting tool\nfatal: tool handler blew up\n")
                sys.stderr.flush()
                sys.exit(3)
            threading.Thread(target=self.call_tool, args=(message,), daemon=True).start()
        elif "id" in message:
            self.error(message["id"], -32601, f"Method not found: {method}")

    def request_client(self, request_id: str, method: str) -> None:
        self.sent[request_id] = None
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": {}})

    def initialize(self, message: dict[str, Any]) -> None:
        params = message.get("params") or {}
        self.result(message["id"], {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake-mcp", "version": "1.2.3"},
        })

    def list_tools(self, message: dict[str, Any]) -> None:
        cursor = (message.get("params") or {}).get("cursor")
        start = int(cursor) if cursor else 0
        page: dict[str, Any] = {"tools": TOOLS[start:start + PAGE_SIZE]}
        if start + PAGE_SIZE < len(TOOLS):
            page["nextCursor"] = str(start + PAGE_SIZE)
        self.result(message["id"], page)

    # -- tools ------------------------------------------------------------
    def call_tool(self, message: dict[str, Any]) -> None:
        params = message.get("params") or {}
        name, args = params.get("name"), params.get("arguments") or {}
        handler = getattr(self, f"tool_{name}", None)
        if handler is None:
            self.error(message["id"], -32602, f"Unknown tool: {name}")
            return
        self.result(message["id"], handler(args))

    def tool_echo(self, args: dict[str, Any]) -> dict[str, Any]:
        return text_result(str(args.get("text", "")))

    def tool_add(self, args: dict[str, Any]) -> dict[str, Any]:
        total = args["a"] + args["b"]
        return {**text_result(str(total)), "structuredContent": {"sum": total}}

    def tool_structured(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"content": [], "structuredContent": {"rows": [1, 2], "ok": True}}

    def tool_fail(self, args: dict[str, Any]) -> dict[str, Any]:
        return {**text_result("the tool failed on purpose"), "isError": True}

    def tool_slow(self, args: dict[str, Any]) -> dict[str, Any]:
        time.sleep(float(args.get("seconds", 1)))
        return text_result("slept")

    def tool_log_noise(self, args: dict[str, Any]) -> dict[str, Any]:
        self.write_raw(b"DEBUG loading plugins...\n\n")
        self.send({"jsonrpc": "2.0", "method": "notifications/message",
                   "params": {"level": "info", "data": "about to answer"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/progress",
                   "params": {"progressToken": 1, "progress": 0.5}})
        return text_result("quiet now")

    def tool_mixed(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"content": [
            {"type": "text", "text": "a chart:"},
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///data.bin", "blob": "AAAA",
                                              "mimeType": "application/octet-stream"}},
        ]}

    def tool_ping_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"content": [], "structuredContent": dict(self.sent)}


def text_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="normal",
                        choices=["normal", "crash-on-call", "crash-on-start", "no-init",
                                 "garbage", "stubborn"])
    parser.add_argument("--log")
    parser.add_argument("--child-pid-file")
    parser.add_argument("--stubborn-child", action="store_true")
    options = parser.parse_args()
    if options.child_pid_file:
        start_child(options.child_pid_file, options.stubborn_child)
    Server(options.mode, options.log).run()


if __name__ == "__main__":
    main()
