"""The README's examples run as written against the real server (its address swapped in)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from flytenotify_server import Server

README = Path(__file__).resolve().parents[1] / "README.md"
README_TARGET = "127.0.0.1:8091"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def is_flyte2(code: str) -> bool:
    return "enqueue_run_event" in code or "enqueue_action_paused" in code


# Flyte 2 examples need the server's Flyte 2 RPCs.
EXAMPLES = [pytest.param(i, marks=[pytest.mark.flyte2_server] if is_flyte2(code) else []) for i, code in enumerate(BLOCKS)]


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 11


@pytest.mark.parametrize("index", EXAMPLES)
def test_readme_example_runs(request: pytest.FixtureRequest, index: int) -> None:
    code = BLOCKS[index]
    if "flytekit" in code:
        pytest.importorskip("flytekit")
    if is_flyte2(code) and "from flyte." in code:
        pytest.importorskip("flyte")
    name = f"README.md example {index}"
    if README_TARGET not in code or "notify.internal" in code:
        # Connection-option examples name hosts that do not exist here: syntax-checked only.
        compile(code, name, "exec")
        return
    # Webhook examples name the "ops-alerts" destination, which that server configures.
    server: Server = request.getfixturevalue("webhook_server" if "Webhook(" in code else "server")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(README_TARGET, server.target), name, "exec"), {"__name__": "readme"})
    if "InvalidArgumentError" in code:
        assert "notifications[0].email.recipients_email[0] -> missing recipient" in out.getvalue()
    if "send_test" in code:
        assert out.getvalue().startswith("DELIVERED")
    if "redrive" in code:
        assert "pending again: ()" in out.getvalue()
    if "enqueue_run_event" in code:
        assert "deliveries: 1" in out.getvalue(), out.getvalue()
        assert "configs: []" in out.getvalue(), out.getvalue()
    if "preview_digest" in code:
        assert "armed: 1" in out.getvalue()
        assert "2 executions FAILED in flytesnacks/development" in out.getvalue(), out.getvalue()
