"""Acceptance: in a fresh virtualenv, `pip install flytekit==1.16.*` and then this package must both
succeed, and a plain flytekit script must get its Email/Slack/PagerDuty notifications delivered.

Slow (it installs flytekit); pip's download cache makes later runs faster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flytenotify_server import Server, recipients, subject_contains, wait_for_mail

CLIENT_DIR = Path(__file__).resolve().parents[1]
FLYTEKIT = "flytekit==1.16.*"
INSTALL_TIMEOUT = 1200

SCRIPT = textwrap.dedent(
    """
    import json, sys

    from flytekit import Email, PagerDuty, Slack, WorkflowExecutionPhase
    from flytenotify import NotificationClient

    target, name = sys.argv[1], sys.argv[2]
    notifications = [
        Email(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["oncall@example.com"]),
        Slack(phases=[WorkflowExecutionPhase.FAILED, WorkflowExecutionPhase.TIMED_OUT],
              recipients_email=["alerts@acme.slack.com"]),
        PagerDuty(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["svc@acme.pagerduty.com"]),
        Email(phases=[WorkflowExecutionPhase.SUCCEEDED], recipients_email=["happy@example.com"]),
    ]
    with NotificationClient(target) as client:
        result = client.enqueue(
            f"flytesnacks/development/{name}", WorkflowExecutionPhase.FAILED, notifications,
            error="Task exited with code 1",
        )
    print(json.dumps({"delivery_ids": list(result.delivery_ids), "unmatched": result.unmatched}))
    """
)


def run(args: list[str], log: Path, timeout: float = INSTALL_TIMEOUT) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV", "VIRTUAL_ENV")}
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    log.write_text(f"$ {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


@pytest.mark.slow
def test_fresh_venv_with_flytekit(server: Server, tmp_path: Path, execution_name: str) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path / "venv.log")
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "install"]

    run([*pip, FLYTEKIT], tmp_path / "flytekit.log")
    run([*pip, str(CLIENT_DIR)], tmp_path / "flytenotify.log")
    run([python, "-m", "pip", "check"], tmp_path / "check.log")

    script = tmp_path / "notify.py"
    script.write_text(SCRIPT)
    out = run([python, str(script), server.target, execution_name], tmp_path / "script.log", timeout=120)
    result = json.loads(out.strip().splitlines()[-1])

    assert len(result["delivery_ids"]) == 3
    assert result["unmatched"] == 1
    mails = wait_for_mail(server.maildir, subject_contains(execution_name), 3)
    assert sorted(min(recipients(m)) for m in mails) == [
        "alerts@acme.slack.com",
        "oncall@example.com",
        "svc@acme.pagerduty.com",
    ]
