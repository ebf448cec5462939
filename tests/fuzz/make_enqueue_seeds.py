#!/usr/bin/env python3
"""Writes the EnqueueRequest seeds in corpus/enqueue/ (protobuf, encoded by hand: no dependencies).

Run from anywhere: python3 tests/fuzz/make_enqueue_seeds.py
"""
import os


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, value):
    """A string, bytes or nested message (wire type 2), or an int (wire type 0)."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def msg(*fields):
    return b"".join(fields)


SUCCEEDED, FAILED, ABORTED, TIMED_OUT, RUNNING = 4, 6, 7, 8, 2


def wf_exec_id(project="flytesnacks", domain="development", name="f3a5b7c9d1", org=""):
    return msg(field(1, project), field(2, domain), field(4, name), *([field(5, org)] if org else []))


def identifier(project, domain, name, version, resource_type):
    return msg(field(1, resource_type), field(2, project), field(3, domain), field(4, name), field(5, version))


def execution(phase, error=None, **id_kw):
    parts = [
        field(1, wf_exec_id(**id_kw)),
        field(2, identifier("flytesnacks", "development", "core.basic.lp", "v1", 3)),
        field(3, identifier("flytesnacks", "development", "core.basic.wf", "v1", 2)),
        field(4, phase),
    ]
    if error:
        parts.append(field(5, msg(field(1, "USER:ValueError"), field(2, error), field(3, "s3://bucket/err.pb"), field(4, 1))))
    # occurred_at: google.protobuf.Timestamp { seconds = 1, nanos = 2 }
    parts.append(field(6, msg(field(1, 1_700_000_000), field(2, 5))))
    return msg(*parts)


def notification(kind, phases, recipients, template=""):
    # oneof type: email = 2, pager_duty = 3, slack = 4
    number = {"email": 2, "pager_duty": 3, "slack": 4}[kind]
    inner = msg(*[field(1, r) for r in recipients], *([field(2, template)] if template else []))
    # phases: packed repeated enum
    packed = b"".join(varint(p) for p in phases)
    return msg(field(1, packed), field(number, inner))


def request(request_id, execution_bytes, notifications):
    parts = []
    if request_id:
        parts.append(field(1, request_id))
    if execution_bytes is not None:
        parts.append(field(2, execution_bytes))
    parts += [field(3, n) for n in notifications]
    return msg(*parts)


SEEDS = {
    "email-succeeded": request(
        "req-1",
        execution(SUCCEEDED),
        [notification("email", [SUCCEEDED, FAILED], ["a@example.com"])],
    ),
    "all-types-failed-with-template": request(
        "req-2",
        execution(FAILED, error="division by zero <&> {{ name }}"),
        [
            notification("email", [FAILED], ["a@example.com", "Ops Team <ops@example.com>"],
                         "Execution {{ name }} has {{ phase }}.{{ error }}"),
            notification("pager_duty", [FAILED, TIMED_OUT], ["oncall@example.pagerduty.com"]),
            notification("slack", [SUCCEEDED], ["channel@example.slack.com"], "<b>{{ project }}</b>"),
        ],
    ),
    "invalid-everything": request(
        "bad\x07id",
        execution(RUNNING, project=" ", domain="", name=""),
        [
            notification("email", [RUNNING], ["not an address", "", "\"quoted local\"@example.com"]),
            msg(field(1, varint(ABORTED))),
        ],
    ),
    "no-execution": request("", None, []),
    "unicode-and-literal": request(
        "req-ü",
        execution(ABORTED, name="ünïcode/../?#x", org="org1"),
        [notification("email", [ABORTED], ["josé@example.com", "a@[127.0.0.1]"],
                      "{{{ name }}} {{  name }} {{ nope }} {{\n")],
    ),
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "enqueue")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")
