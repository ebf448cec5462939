"""A stand-in for Slack (incoming webhooks and chat.postMessage) and PagerDuty's Events API v2
that records every request and answers from a script.

Each request is appended to LOG as one JSON line: method, path, headers (names in lower case),
the JSON body (or null when it is not JSON), the status it was answered with, and when it
arrived (`at`, seconds since the epoch). The path picks
the service:

  POST /v2/enqueue              PagerDuty: success is 202 {"status": "success", ...}
  POST /api/chat.postMessage    Slack's Web API: success is 200 {"ok": true, ...}
  any other POST                a Slack incoming webhook: success is 200 "ok"

SCRIPT is a comma-separated list of answers for the first requests, in order; once it runs out,
every request gets the service's success. An answer is one of:

  ok                            the service's success
  hang                          no answer at all (for an hour): a peer that times out
  STATUS[:ERROR][@SECONDS]      STATUS with the service's error ERROR, and Retry-After: SECONDS

ERROR goes where the service puts its own: an incoming webhook answers it as plain text,
chat.postMessage as {"ok": false, "error": ERROR}, PagerDuty as {"status": "invalid event",
"message": "Event object is invalid", "errors": [ERROR]}. In ERROR, {auth}, {path} and
{routing_key} are replaced by the request's Authorization header, path and routing_key, as a
careless proxy might quote a request back: tests check that no secret reaches an error.
Examples: `500,ok`, `429@2`, `404:channel_not_found`, `200:invalid_auth {auth}`.

usage: slack_pagerduty_sink.py PORT LOG [SCRIPT]
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGERDUTY_PATH = "/v2/enqueue"
SLACK_API_PATH = "/api/chat.postMessage"


def parse(answer):
    """(status or None for success, error or None, retry_after or None); 'hang' as status -1."""
    if answer == "ok":
        return None, None, None
    if answer == "hang":
        return -1, None, None
    retry_after = None
    head, at, tail = answer.rpartition("@")
    if at and tail.isdigit():
        answer, retry_after = head, tail
    status, _, error = answer.partition(":")
    return int(status), (error or None), retry_after


def success(path, body):
    if path == PAGERDUTY_PATH:
        dedup_key = (body or {}).get("dedup_key") or "generated-dedup-key"
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
    if path == SLACK_API_PATH:
        return 200, {"ok": True, "channel": "C0001", "ts": "1795755600.000100"}
    return 200, "ok"


def failure(path, status, error):
    if path == PAGERDUTY_PATH:
        if error is not None:
            return {"status": "invalid event", "message": "Event object is invalid", "errors": [error]}
        if status == 429:
            return {"status": "throttle event", "message": "Requests for this service are arriving too quickly."}
        return "Internal Server Error" if status >= 500 else {"status": "error", "message": "error"}
    if path == SLACK_API_PATH:
        return {"ok": False, "error": error or ("ratelimited" if status == 429 else "internal_error")}
    if error is not None:
        return error
    return "rate_limited" if status == 429 else "internal_error"


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
                status, error, retry_after = parse(script.pop(0) if script else "ok")
                if status is None:
                    status, payload = success(self.path, body)
                elif status == -1:
                    payload = None
                else:
                    if error is not None:
                        routing_key = body.get("routing_key", "") if isinstance(body, dict) else ""
                        error = (
                            error.replace("{auth}", self.headers.get("Authorization") or "")
                            .replace("{path}", self.path)
                            .replace("{routing_key}", routing_key)
                        )
                    payload = failure(self.path, status, error)
                record = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "status": status,
                    "at": time.time(),
                }
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(record) + "\n")
            if status == -1:
                time.sleep(3600)
                return
            if isinstance(payload, str):
                data, kind = payload.encode(), "text/plain; charset=utf-8"
            else:
                data, kind = json.dumps(payload).encode(), "application/json; charset=utf-8"
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
