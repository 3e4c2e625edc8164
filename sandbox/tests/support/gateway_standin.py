#!/usr/bin/env python3
"""A stand-in gateway speaking the OpenClaw HTTP contract the process
runtime relies on: GET /readyz, POST /v1/chat/completions with a bearer
token. Reads PORT and GATEWAY_TOKEN from the environment. The first
argument picks a behaviour:

  normal        serve forever
  crash         print a line and exit 3 one second after becoming ready
  crash-once    like crash on the first run (marker file in $HOME), then normal
  hog           after ready, hold 300 MiB of touched memory
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[1] if len(sys.argv) > 1 else "normal"
PORT = int(os.environ["PORT"])
TOKEN = os.environ["GATEWAY_TOKEN"]
MARKER = os.path.join(os.environ.get("HOME", "/tmp"), "crashed-once")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/readyz":
            self.reply(200, {"ready": True})
        else:
            self.reply(404, {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            self.reply(401, {"error": "unauthorized"})
            return
        text = body["messages"][-1]["content"]
        self.reply(200, {
            "choices": [{"message": {"role": "assistant", "content": "standin: " + text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        })


def later():
    time.sleep(1)
    if MODE == "crash" or (MODE == "crash-once" and not os.path.exists(MARKER)):
        open(MARKER, "w").close()
        print("crashing on purpose", flush=True)
        os._exit(3)
    if MODE == "hog":
        global HOARD
        HOARD = bytearray(300 << 20)
        for i in range(0, len(HOARD), 4096):
            HOARD[i] = 1
        print("holding 300 MiB", flush=True)


print("stand-in gateway on port %d (%s)" % (PORT, MODE), flush=True)
threading.Thread(target=later, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
