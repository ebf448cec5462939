"""A stand-in for SendGrid's v3 API that records every request and answers from a script.

Each request is appended to LOG as one JSON line: method, path, headers (names in lower case),
the JSON body (or null when it is not JSON), and the status it was answered with. SCRIPT is a
comma-separated list of answers for the first requests, in order; once it runs out, every request
gets 202 as SendGrid answers an accepted send. An answer is a status, optionally followed by
`@VALUE` for a Retry-After header, e.g. `500,500,429@1,202`. Error answers carry a body shaped as
SendGrid's (`{"errors": [{"message", "field", "help"}]}`); a 401 quotes the Authorization header
it got, as a careless proxy might, so that tests can check the key is scrubbed from errors.
Runs until killed.

usage: sendgrid_sink.py PORT LOG [SCRIPT]
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGES = {
    400: ("The from address does not match a verified Sender Identity.", "from"),
    401: ("The provided authorization grant is invalid, expired, or revoked", None),
    403: ("Access forbidden", None),
    413: ("The JSON payload you have included in your request is too large.", None),
    429: ("Too many requests", None),
    500: ("Internal server error", None),
    503: ("Service unavailable", None),
}


def main() -> None:
    port, log_path = int(sys.argv[1]), sys.argv[2]
    script = [a for a in (sys.argv[3] if len(sys.argv) > 3 else "").split(",") if a]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            with lock:
                answer = script.pop(0) if script else "202"
                status, _, retry_after = answer.partition("@")
                status = int(status)
                record = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "status": status,
                }
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(record) + "\n")
            payload = b""
            if status >= 300:
                message, field = MESSAGES.get(status, ("error", None))
                if status == 401:
                    message += f" (got {self.headers.get('Authorization')})"
                payload = json.dumps(
                    {"errors": [{"message": message, "field": field, "help": None}]}
                ).encode()
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", retry_after)
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
