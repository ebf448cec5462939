"""A webhook receiver that records every request exactly and answers from a script.

Each request is appended to LOG as one JSON line: method, path (with its query), headers (names
in lower case), the body as text, the body parsed as JSON (or null), the status it was answered
with, when it arrived (`at`, seconds since the epoch), and `signature`: what the official
Standard Webhooks library (`pip install standardwebhooks`) says of the request's webhook-* headers, checked against SECRET (the
fourth argument, if any): "valid", "absent" (no webhook-signature header),
"unchecked" (no secret given), or the library's error. A `whsec_` secret is given to the library
as the string it is; any other as its bytes, which is how flyte-notify reads a secret without
that prefix.

SCRIPT is a comma-separated list of answers for the first requests, in order; once it runs out,
every request gets 200. An answer is `STATUS[@RETRY_AFTER][=BODY]`, e.g. `500,200`, `429@2`,
`404=channel_not_found`, or `sleep` (hold the request for a minute before answering 200: a
receiver that times out). An error answer without a body echoes the request line and headers,
as a careless proxy might, so that tests can check that secrets are scrubbed from errors. A 3xx
answer points Location at /redirected on this sink. Runs until killed.

usage: webhook_sink.py PORT LOG [SCRIPT [SECRET]]
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


def verify(secret, body, headers):
    if "webhook-signature" not in headers:
        return "absent"
    if not secret:
        return "unchecked"
    key = secret if secret.startswith("whsec_") else secret.encode()
    try:
        Webhook(key).verify(body, headers, json_parse=False)
        return "valid"
    except Exception as e:  # the library's own verdict, whatever its type
        return f"invalid: {type(e).__name__}: {e}"


def main() -> None:
    port, log_path = int(sys.argv[1]), sys.argv[2]
    script = [a for a in (sys.argv[3] if len(sys.argv) > 3 else "").split(",") if a]
    secret = sys.argv[4] if len(sys.argv) > 4 else ""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", errors="replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            with lock:
                answer = script.pop(0) if script else "200"
                if answer == "sleep":
                    status, retry_after, body = 200, "", None
                else:
                    head, has_body, body = answer.partition("=")
                    status, _, retry_after = head.partition("@")
                    status = int(status)
                    body = body if has_body else None
                record = {
                    "method": self.command,
                    "path": self.path,
                    "headers": headers,
                    "body": raw,
                    "json": parsed,
                    "status": status,
                    "signature": verify(secret, raw, headers),
                    "at": time.time(),
                }
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(record) + "\n")
            if answer == "sleep":
                time.sleep(60)
            if body is None and status >= 300:
                echoed = "".join(f"{k}: {v}\n" for k, v in self.headers.items())
                body = f"{self.command} {self.path}\n{echoed}"
            payload = (body or "").encode()
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", retry_after)
            if 300 <= status < 400:
                # Somewhere on this sink: a client that followed it would show up in the log.
                self.send_header("Location", "/redirected")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
