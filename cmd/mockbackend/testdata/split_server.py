"""A backend on Python's http.server, the server Flask's development
server is built on. It answers as they do: each answer's status line and
headers in one write, its body in a second, on sockets without
TCP_NODELAY. Tests and benchmarks run it to check that the mock's
-split-writes has the same habit, and what it costs a client.

    python3 split_server.py PORT    (0: any free port)

It prints "listening on 127.0.0.1:PORT" once it accepts connections, and
serves GET /health, GET /stats (connections accepted) and POST
/v1/chat/completions (a one-word answer).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
connections = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a proxy expects

    def setup(self):
        global connections
        super().setup()
        with lock:
            connections += 1

    def answer(self, status, obj):
        body = json.dumps(obj).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # the first write: status line and headers
        self.wfile.write(body)  # the second: the body

    def do_GET(self):
        if self.path == "/health":
            self.answer(200, {"status": "ok"})
        elif self.path == "/stats":
            with lock:
                self.answer(200, {"connections": connections})
        else:
            self.not_found()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/v1/chat/completions":
            self.not_found()
            return
        model = json.loads(body or b"{}").get("model", "python")
        self.answer(200, {
            "id": "chatcmpl-py", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def not_found(self):
        self.answer(404, {"error": {"message": "unknown endpoint " + self.path,
                                    "type": "invalid_request_error", "code": "not_found"}})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
