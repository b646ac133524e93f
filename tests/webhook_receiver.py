"""A webhook receiver for the tests: it verifies every delivery with the
published Standard Webhooks library (the `standardwebhooks` package), not
with roomtoken's code, and records what it received.

Each test uses a channel of its own:
  PUT  /channels/NAME             {"secret": "whsec_...", "mode": "ok"}
       mode: ok (204), fail (500) or hang (answers only when the mode
       changes, or after 120 s)
  POST /hooks/NAME                the webhook URL roomtoken sends to
  GET  /channels/NAME/deliveries  every delivery received, in order:
       {"id", "verified", "error", "status", "payload", "body"}

Started by scripts/tools.sh (start_services) on a free loopback port.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Condition()
CHANNELS = {}  # name -> {"secret", "mode", "deliveries": [...]}
HANG_LIMIT_SECS = 120


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("receiver: " + (fmt % args) + "\n")

    def _read_body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length)

    def _answer(self, status, payload=None):
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _channel(self, prefix, suffix=""):
        name = self.path[len(prefix):]
        if suffix:
            name = name[: -len(suffix)]
        return name

    def do_GET(self):
        if self.path == "/health":
            return self._answer(200, {"ok": True})
        if self.path.startswith("/channels/") and self.path.endswith("/deliveries"):
            name = self._channel("/channels/", "/deliveries")
            with LOCK:
                channel = CHANNELS.get(name)
                deliveries = list(channel["deliveries"]) if channel else None
            if deliveries is None:
                return self._answer(404, {"error": "no such channel"})
            return self._answer(200, deliveries)
        return self._answer(404, {"error": "not found"})

    def do_PUT(self):
        if not self.path.startswith("/channels/"):
            return self._answer(404, {"error": "not found"})
        name = self._channel("/channels/")
        config = json.loads(self._read_body() or b"{}")
        with LOCK:
            channel = CHANNELS.setdefault(name, {"deliveries": []})
            if "secret" in config:
                channel["secret"] = config["secret"]
            channel["mode"] = config.get("mode", "ok")
            LOCK.notify_all()
        return self._answer(204)

    def do_POST(self):
        if not self.path.startswith("/hooks/"):
            return self._answer(404, {"error": "not found"})
        name = self._channel("/hooks/")
        body = self._read_body()
        headers = {k: v for k, v in self.headers.items()}
        with LOCK:
            channel = CHANNELS.get(name)
        if channel is None:
            return self._answer(404, {"error": "no such channel"})
        record = {
            "id": headers.get("webhook-id") or headers.get("Webhook-Id"),
            "verified": False,
            "error": None,
            "payload": None,
            "body": body.decode("utf-8", "replace"),
        }
        try:
            record["payload"] = Webhook(channel["secret"]).verify(body, headers)
            record["verified"] = True
        except (WebhookVerificationError, ValueError, KeyError) as error:
            record["error"] = f"{type(error).__name__}: {error}"
        with LOCK:
            mode = channel["mode"]
            record["status"] = {"ok": 204, "fail": 500}.get(mode, 204)
            channel["deliveries"].append(record)
            LOCK.notify_all()
            if mode == "hang":
                LOCK.wait_for(lambda: channel["mode"] != "hang", timeout=HANG_LIMIT_SECS)
        try:
            self._answer(record["status"])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting, as it should


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
