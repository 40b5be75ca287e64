"""A scripted model server on 127.0.0.1 that stands in for the AI providers in tests.

It speaks the four wire protocols the real agent CLIs use:

* OpenAI chat completions (``POST .../chat/completions``, plain and streamed): aider, cline;
* OpenAI Responses (``POST .../responses``, streamed server-sent events): codex;
* Anthropic Messages (``POST .../v1/messages``, plain and streamed): claude;
* Gemini ``generateContent`` / ``streamGenerateContent`` (``POST .../models/M:ACTION``): gemini.

What the "model" answers is a :class:`Script`. Scenarios:

* ``write``: the first answer to a request that offers a file-writing tool calls that tool (the
  CLI's own: ``Write``, ``apply_patch``, ``write_file``, ``write_to_file``/``editor``, or an
  aider edit block) to create ``Script.path`` with ``Script.content``; once the conversation holds
  the tool's result the model ends with logist's outcome block (``Script.action``).
* ``deny``: like ``write`` but the tool call is one the CLI's default permissions refuse (a
  shell command, or a write outside the working directory); then COMPLETED.
* ``auth``: every model request gets HTTP 401 with the provider's error body.
* ``hang``: every model request's connection is closed without an answer; ``drop``: the stream
  starts (200, event-stream headers), then the connection drops before any event. Either way
  the CLI retries or reconnects, again and again.
* ``retry``: the first step ends with RETRY (a transient problem); later requests COMPLETE.
* ``text``: answers every request with the outcome block only (no tool).

Requests that are not part of the main conversation (title generation, "next speaker" checks,
token counting, model lists) get small generic answers. The server is bounded: at most
``max_requests`` requests and ``max_seconds`` of life; past either it answers 503 and stops.
Every request is recorded (path, headers without credentials, JSON body) in ``requests``.

By hand: ``python tests/model_server.py --scenario write --path hello.txt`` prints the base URL
and serves until Ctrl-C or its bounds.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCENARIOS = ("write", "deny", "auth", "hang", "drop", "retry", "text")


@dataclass
class Script:
    """What the scripted model does."""

    scenario: str = "write"
    path: str = "hello.txt"  # relative to the agent's working directory
    content: str = "hello from the scripted model\n"
    action: str = "COMPLETED"
    summary: str = "created the file"
    input_tokens: int = 100
    output_tokens: int = 20

    def outcome_text(self, action: str | None = None) -> str:
        """The final answer: a sentence and logist's fenced outcome block."""
        act = action or self.action
        files = [self.path] if act == "COMPLETED" and self.scenario == "write" else []
        summary = self.summary if act == "COMPLETED" else f"{act.lower()}: scripted"
        block = json.dumps({"action": act, "summary": summary, "evidence_files": files})
        return f"Done.\n\n```json\n{block}\n```\n"


@dataclass
class Turn:
    """One answer of the model: text, or a tool call (name + arguments)."""

    text: str = ""
    tool: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    custom_input: str | None = None  # a freeform (custom) tool's input, Responses API


# --------------------------------------------------------------------------- the conversation

_CWD_PATTERNS = (
    re.compile(r"<cwd>([^<\n]+)</cwd>"),
    re.compile(r"(?:Primary working directory|Working directory|Current [Ww]orking [Dd]irectory"
               r"|current working directory is|working in the directory)[:\s]*`?(/[^\s`'\"\n]+)"),
    re.compile(r"\bcwd[\"']?\s*[:=]\s*[\"'`]?(/[^\s`'\",\n]+)"),
)


def _texts(obj: Any) -> list[str]:
    """Every string inside a JSON value (to search system prompts and messages)."""
    out: list[str] = []
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, str):
            out.append(cur)
        elif isinstance(cur, dict):
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return out


def find_cwd(body: Any) -> str | None:
    """The agent's working directory as its system prompt or context states it."""
    for text in _texts(body):
        for pattern in _CWD_PATTERNS:
            m = pattern.search(text)
            if m:
                return m.group(1).rstrip(".:,")
    return None


@dataclass
class Request:
    """A model request reduced to what the script needs, whatever the protocol."""

    tools: list[str]  # names of the tools offered
    tool_results: int  # how many tool results the conversation holds
    user_text: str  # all user-side text, joined
    system_text: str
    cwd: str | None
    attempt_marker: bool  # the prompt says it is a later attempt (logist's retry prompt)
    schema: Any = None  # a JSON schema the answer must follow (a side request: routing, checks)


def _decide(script: Script, req: Request, state: dict[str, Any]) -> Turn:
    """The model's answer for ``req``."""
    if req.schema is not None:  # routing / "next speaker" checks: a JSON answer
        return Turn(text=json.dumps(schema_instance(req.schema)))
    main = "Reporting your outcome" in req.user_text or "Reporting your outcome" in req.system_text
    if not main:
        return Turn(text="Logist scripted job")  # a side request: title, summary, check
    if script.scenario == "text":
        return Turn(text=script.outcome_text())
    if script.scenario == "retry":
        with state["lock"]:
            state["main_requests"] += 1
            first = state["retry_done"] is False
            if first:
                state["retry_done"] = True
        return Turn(text=script.outcome_text("RETRY" if first else "COMPLETED"))
    if req.tool_results > 0:
        return Turn(text=script.outcome_text())
    call = _tool_call(script, req)
    if call is not None:
        return call
    if not req.tools and script.scenario == "write":  # aider: edits are blocks in the reply
        return Turn(text=_edit_block(script, req) + "\n" + script.outcome_text())
    return Turn(text=script.outcome_text())


def _edit_block(script: Script, req: Request) -> str:
    """An aider edit creating the file: a SEARCH/REPLACE block (diff formats) or a whole-file
    listing (whole format), whichever the system prompt asks for."""
    if "SEARCH/REPLACE" in req.system_text or "<<<<<<< SEARCH" in req.system_text:
        return (f"{script.path}\n```\n<<<<<<< SEARCH\n=======\n{script.content}"
                ">>>>>>> REPLACE\n```\n")
    return f"{script.path}\n```\n{script.content}```\n"


def schema_instance(schema: Any) -> Any:
    """A small value that satisfies ``schema`` (OpenAPI / JSON Schema, either case of type)."""
    if not isinstance(schema, dict):
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type") or "object").lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: schema_instance(v) for k, v in props.items()}
    if kind == "array":
        return []
    if kind == "integer":
        return 30
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return False
    return "scripted"


def _abs(req: Request, path: str) -> str:
    return f"{req.cwd.rstrip('/')}/{path}" if req.cwd else path


def _tool_call(script: Script, req: Request) -> Turn | None:
    """The CLI's own file-writing tool, called to create the script's file (or, for ``deny``,
    a call its default permissions refuse)."""
    tools = set(req.tools)
    if "exec" in tools:  # codex: code mode, one JavaScript ``exec`` tool composing the others
        body = "".join(f"+{line}\n" for line in script.content.splitlines())
        patch = f"*** Begin Patch\n*** Add File: {script.path}\n{body}*** End Patch\n"
        if script.scenario == "deny":
            patch = patch.replace(f"Add File: {script.path}", "Add File: /etc/logist-denied")
        return Turn(tool="exec", custom_input=f"await tools.apply_patch({json.dumps(patch)});")
    if script.scenario == "deny":
        if "Bash" in tools:  # claude: shell commands need a permission acceptEdits lacks
            return Turn(tool="Bash", args={"command": f"python3 -c \"open('{script.path}', 'w')\"",
                                           "description": "create the file"})
        if "write_file" in tools:  # gemini: a write outside the workspace
            return Turn(tool="write_file", args={"file_path": "/etc/logist-denied.txt",
                                                 "content": script.content})
        if "execute_command" in tools:  # cline
            return Turn(tool="execute_command", args={"command": f"touch {script.path}",
                                                      "requires_approval": True})
    if "Write" in tools:  # claude
        return Turn(tool="Write", args={"file_path": _abs(req, script.path),
                                        "content": script.content})
    if "write_file" in tools:  # gemini
        return Turn(tool="write_file", args={"file_path": _abs(req, script.path),
                                             "content": script.content})
    if "write_to_file" in tools:  # cline (classic tools)
        return Turn(tool="write_to_file", args={"path": script.path, "content": script.content,
                                                "absolutePath": _abs(req, script.path)})
    if "apply_patch" in tools:  # codex
        body = "".join(f"+{line}\n" for line in script.content.splitlines())
        patch = f"*** Begin Patch\n*** Add File: {script.path}\n{body}*** End Patch\n"
        return Turn(tool="apply_patch", custom_input=patch)
    for name in ("editor", "str_replace_editor", "create_file", "write"):
        if name in tools:
            return Turn(tool=name, args={"command": "create", "path": _abs(req, script.path),
                                         "file_text": script.content, "content": script.content})
    return None


# --------------------------------------------------------------------------- protocol readers

def _openai_chat_request(body: dict[str, Any]) -> Request:
    msgs = body.get("messages") or []
    tools = [t.get("function", {}).get("name", "") for t in body.get("tools") or []
             if isinstance(t, dict)]
    results = sum(1 for m in msgs if isinstance(m, dict) and m.get("role") == "tool")
    system = " ".join(_texts([m.get("content") for m in msgs
                              if isinstance(m, dict) and m.get("role") == "system"]))
    user = " ".join(_texts([m.get("content") for m in msgs
                            if isinstance(m, dict) and m.get("role") == "user"]))
    fmt = body.get("response_format")
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    return Request(tools, results, user, system, find_cwd(body), "attempt" in user, schema)


def _responses_request(body: dict[str, Any]) -> Request:
    items = body.get("input") or []
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    tools: list[str] = []
    stack = list(body.get("tools") or [])
    stack += [t for it in items if isinstance(it, dict) and it.get("type") == "additional_tools"
              for t in it.get("tools") or []]
    while stack:  # codex nests its tools in namespaces, in an ``additional_tools`` input item
        t = stack.pop()
        if isinstance(t, dict):
            tools.append(str(t.get("name") or t.get("type") or ""))
            stack.extend(t.get("tools") or [])
    results = sum(1 for it in items if isinstance(it, dict)
                  and str(it.get("type", "")).endswith("_call_output"))
    user = " ".join(_texts([it.get("content") for it in items
                            if isinstance(it, dict) and it.get("role") == "user"]))
    system = " ".join(_texts(body.get("instructions")))
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    return Request(tools, results, user, system, find_cwd(body), "attempt" in user, schema)


def _anthropic_request(body: dict[str, Any]) -> Request:
    msgs = body.get("messages") or []
    tools = [str(t.get("name", "")) for t in body.get("tools") or [] if isinstance(t, dict)]
    results = 0
    user_parts: list[Any] = []
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, list):
            results += sum(1 for c in content
                           if isinstance(c, dict) and c.get("type") == "tool_result")
        user_parts.append(content)
    user = " ".join(_texts(user_parts))
    system = " ".join(_texts(body.get("system")))
    return Request(tools, results, user, system, find_cwd(body), "attempt" in user)


def _gemini_request(body: dict[str, Any]) -> Request:
    contents = body.get("contents") or []
    tools: list[str] = []
    for t in body.get("tools") or []:
        if isinstance(t, dict):
            tools += [str(f.get("name", "")) for f in t.get("functionDeclarations") or []
                      if isinstance(f, dict)]
    results = 0
    user_parts: list[Any] = []
    for c in contents:
        if not isinstance(c, dict):
            continue
        parts = c.get("parts") or []
        results += sum(1 for p in parts if isinstance(p, dict) and "functionResponse" in p)
        if c.get("role") == "user":
            user_parts.append([p.get("text") for p in parts if isinstance(p, dict)])
    user = " ".join(_texts(user_parts))
    system = " ".join(_texts(body.get("systemInstruction") or body.get("system_instruction")))
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if schema is None and config.get("responseMimeType") == "application/json":
        schema = {"type": "object"}
    return Request(tools, results, user, system, find_cwd(body), "attempt" in user, schema)


# --------------------------------------------------------------------------- the server

class ModelServer:
    """The scripted provider; use as a context manager (``with ModelServer(Script()) as s``)."""

    def __init__(self, script: Script | None = None, *, max_requests: int = 300,
                 max_seconds: float = 120.0) -> None:
        self.script = script or Script()
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.requests: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {"lock": threading.Lock(), "main_requests": 0,
                                      "retry_done": False}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._deadline = 0.0
        self.tokens_served = 0

    # -- lifecycle
    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ModelServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._deadline = time.monotonic() + self.max_seconds
        self._thread = threading.Thread(target=self._serve, name="model-server", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._httpd is not None
        self._httpd.timeout = 0.2
        while time.monotonic() < self._deadline and self._httpd is not None:
            self._httpd.handle_request()

    def stop(self) -> None:
        self._deadline = 0.0
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._httpd is not None:
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- bookkeeping
    def record(self, method: str, path: str, headers: dict[str, str], body: Any) -> int:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers,
                                  "body": body, "t": time.monotonic()})
            return len(self.requests)

    def model_requests(self) -> list[dict[str, Any]]:
        """The recorded requests that asked the model for an answer."""
        return [r for r in self.requests if r["method"] == "POST" and _protocol(r["path"])]

    def exhausted(self) -> bool:
        return len(self.requests) > self.max_requests or time.monotonic() > self._deadline


def _protocol(path: str) -> str | None:
    p = path.split("?", 1)[0]
    if p.endswith("/chat/completions"):
        return "chat"
    if p.endswith("/responses"):
        return "responses"
    if p.endswith("/messages"):
        return "anthropic"
    if ":generateContent" in p or ":streamGenerateContent" in p:
        return "gemini"
    return None


_SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}


class _Handler(BaseHTTPRequestHandler):
    owner: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- plumbing
    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 and self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            raw = self.rfile.read(length) if length > 0 else b""
        if self.headers.get("Content-Encoding", "") in ("gzip", "zstd", "br"):
            if self.headers.get("Content-Encoding") == "gzip":
                import gzip
                raw = gzip.decompress(raw)
            else:
                return {"_undecoded": self.headers.get("Content-Encoding")}
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return {"_raw": raw[:2000].decode("utf-8", "replace")}

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _event(self, data: Any, event: str | None = None) -> None:
        text = (f"event: {event}\n" if event else "") + \
            f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
        self.wfile.write(text.encode())
        self.wfile.flush()

    # -- verbs
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        owner = self.owner
        body = self._body() if method == "POST" else None
        headers = {k: ("<redacted>" if k.lower() in _SECRET_HEADERS else v)
                   for k, v in self.headers.items()}
        owner.record(method, self.path, headers, body)
        if owner.exhausted():
            self._json(503, {"error": {"message": "scripted model server: bounds reached"}})
            return
        proto = _protocol(self.path) if method == "POST" else None
        if proto is None:
            self._other(method)
            return
        if "countTokens" in self.path or self.path.split("?")[0].endswith("/count_tokens"):
            self._json(200, {"totalTokens": 10, "input_tokens": 10})
            return
        scenario = owner.script.scenario
        if scenario in ("hang", "drop"):  # no answer; or ("drop") the stream starts, then stops
            if scenario == "drop":
                self._sse_start()
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if scenario == "auth":
            self._auth_error(proto)
            return
        body = body if isinstance(body, dict) else {}
        reader = {"chat": _openai_chat_request, "responses": _responses_request,
                  "anthropic": _anthropic_request, "gemini": _gemini_request}[proto]
        turn = _decide(owner.script, reader(body), owner.state)
        with owner._lock:
            owner.tokens_served += owner.script.input_tokens + owner.script.output_tokens
        getattr(self, f"_answer_{proto}")(body, turn)

    def _other(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        if path.endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "scripted-model",
                                                         "object": "model"}],
                             "models": [{"name": "models/scripted-model"}]})
        elif method == "HEAD":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._json(404, {"error": {"message": f"scripted model server: no {path}"}})

    def _auth_error(self, proto: str) -> None:
        if proto == "anthropic":
            self._json(401, {"type": "error", "error": {
                "type": "authentication_error", "message": "invalid x-api-key"}})
        elif proto == "gemini":
            self._json(401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message":
                                       "API key not valid. Please pass a valid API key."}})
        else:
            self._json(401, {"error": {"message": "Incorrect API key provided: sk-te***st.",
                                       "type": "invalid_request_error", "param": None,
                                       "code": "invalid_api_key"}})

    # -- OpenAI chat completions
    def _answer_chat(self, body: dict[str, Any], turn: Turn) -> None:
        script = self.owner.script
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time()), \
            str(body.get("model") or "scripted-model")
        usage = {"prompt_tokens": script.input_tokens, "completion_tokens": script.output_tokens,
                 "total_tokens": script.input_tokens + script.output_tokens}
        call = None
        if turn.tool:
            args = turn.args or ({"input": turn.custom_input} if turn.custom_input else {})
            call = {"id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                    "function": {"name": turn.tool, "arguments": json.dumps(args)}}
        finish = "tool_calls" if call else "stop"
        if not body.get("stream"):
            msg: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
            if call:
                msg["tool_calls"] = [call]
            self._json(200, {"id": cid, "object": "chat.completion", "created": created,
                             "model": model, "choices": [{"index": 0, "message": msg,
                                                          "finish_reason": finish}],
                             "usage": usage})
            return
        self._sse_start()

        def chunk(delta: dict[str, Any], fin: str | None = None, **extra: Any) -> None:
            self._event({"id": cid, "object": "chat.completion.chunk", "created": created,
                         "model": model, "choices": [{"index": 0, "delta": delta,
                                                      "finish_reason": fin}], **extra})

        chunk({"role": "assistant", "content": ""})
        if turn.text:
            chunk({"content": turn.text})
        if call:
            chunk({"tool_calls": [{"index": 0, **call}]})
        chunk({}, finish)
        self._event({"id": cid, "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": [], "usage": usage})
        self._event("[DONE]")

    # -- OpenAI Responses
    def _answer_responses(self, body: dict[str, Any], turn: Turn) -> None:
        script = self.owner.script
        rid = f"resp_{uuid.uuid4().hex[:12]}"
        model = str(body.get("model") or "scripted-model")
        usage = {"input_tokens": script.input_tokens, "input_tokens_details":
                 {"cached_tokens": 0}, "output_tokens": script.output_tokens,
                 "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": script.input_tokens + script.output_tokens}
        if turn.tool:
            if turn.custom_input is not None:
                item: dict[str, Any] = {"type": "custom_tool_call", "id": f"ctc_{rid}",
                                        "status": "completed", "call_id": f"call_{rid}",
                                        "name": turn.tool, "input": turn.custom_input}
            else:
                item = {"type": "function_call", "id": f"fc_{rid}", "status": "completed",
                        "call_id": f"call_{rid}", "name": turn.tool,
                        "arguments": json.dumps(turn.args)}
        else:
            item = {"type": "message", "id": f"msg_{rid}", "status": "completed",
                    "role": "assistant", "content": [{"type": "output_text", "text": turn.text,
                                                      "annotations": []}]}
        response = {"id": rid, "object": "response", "created_at": int(time.time()),
                    "status": "in_progress", "model": model, "output": []}
        if not body.get("stream"):
            self._json(200, {**response, "status": "completed", "output": [item],
                             "usage": usage})
            return
        self._sse_start()
        seq = iter(range(1000))
        self._event({"type": "response.created", "sequence_number": next(seq),
                     "response": response}, "response.created")
        self._event({"type": "response.output_item.added", "sequence_number": next(seq),
                     "output_index": 0, "item": {**item, "status": "in_progress"}},
                    "response.output_item.added")
        if item["type"] == "message":
            self._event({"type": "response.output_text.delta", "sequence_number": next(seq),
                         "item_id": item["id"], "output_index": 0, "content_index": 0,
                         "delta": turn.text}, "response.output_text.delta")
        self._event({"type": "response.output_item.done", "sequence_number": next(seq),
                     "output_index": 0, "item": item}, "response.output_item.done")
        self._event({"type": "response.completed", "sequence_number": next(seq),
                     "response": {**response, "status": "completed", "output": [item],
                                  "usage": usage}}, "response.completed")

    # -- Anthropic Messages
    def _answer_anthropic(self, body: dict[str, Any], turn: Turn) -> None:
        script = self.owner.script
        mid = f"msg_{uuid.uuid4().hex[:12]}"
        model = str(body.get("model") or "claude-scripted")
        blocks: list[dict[str, Any]] = []
        if turn.text:
            blocks.append({"type": "text", "text": turn.text})
        if turn.tool:
            blocks.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}",
                           "name": turn.tool, "input": turn.args})
        stop = "tool_use" if turn.tool else "end_turn"
        usage = {"input_tokens": script.input_tokens, "output_tokens": script.output_tokens,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        message = {"id": mid, "type": "message", "role": "assistant", "model": model,
                   "content": blocks, "stop_reason": stop, "stop_sequence": None,
                   "usage": usage}
        if not body.get("stream"):
            self._json(200, message)
            return
        self._sse_start()
        self._event({"type": "message_start", "message": {
            **message, "content": [], "stop_reason": None,
            "usage": {**usage, "output_tokens": 1}}}, "message_start")
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                self._event({"type": "content_block_start", "index": i,
                             "content_block": {"type": "text", "text": ""}},
                            "content_block_start")
                self._event({"type": "content_block_delta", "index": i,
                             "delta": {"type": "text_delta", "text": block["text"]}},
                            "content_block_delta")
            else:
                self._event({"type": "content_block_start", "index": i, "content_block":
                             {**block, "input": {}}}, "content_block_start")
                self._event({"type": "content_block_delta", "index": i, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(block["input"])}},
                    "content_block_delta")
            self._event({"type": "content_block_stop", "index": i}, "content_block_stop")
        self._event({"type": "message_delta", "delta": {"stop_reason": stop,
                                                         "stop_sequence": None},
                     "usage": {"output_tokens": script.output_tokens}}, "message_delta")
        self._event({"type": "message_stop"}, "message_stop")

    # -- Gemini
    def _answer_gemini(self, body: dict[str, Any], turn: Turn) -> None:
        script = self.owner.script
        parts: list[dict[str, Any]] = []
        if turn.text:
            parts.append({"text": turn.text})
        if turn.tool:
            parts.append({"functionCall": {"name": turn.tool, "args": turn.args}})
        answer = {"candidates": [{"content": {"role": "model", "parts": parts},
                                  "finishReason": "STOP", "index": 0}],
                  "usageMetadata": {"promptTokenCount": script.input_tokens,
                                    "candidatesTokenCount": script.output_tokens,
                                    "totalTokenCount": script.input_tokens
                                    + script.output_tokens},
                  "modelVersion": "gemini-scripted"}
        if ":streamGenerateContent" not in self.path:
            self._json(200, answer)
            return
        self._sse_start()
        self._event(answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="write")
    parser.add_argument("--path", default="hello.txt")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--log", help="append each request as a JSON line to this file")
    ns = parser.parse_args()
    server = ModelServer(Script(scenario=ns.scenario, path=ns.path), max_seconds=ns.max_seconds)
    with server:
        print(server.url, flush=True)
        seen = 0
        try:
            while not server.exhausted():
                time.sleep(0.2)
                while seen < len(server.requests):
                    r = server.requests[seen]
                    seen += 1
                    if ns.log:
                        with open(ns.log, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(r) + "\n")
                    print(r["method"], r["path"], flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
