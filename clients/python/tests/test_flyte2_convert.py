"""Flyte 2 inputs to the requests that carry them, without a server. The rules from flyte.notify
objects must be exactly what the flyte SDK's serializer makes (the committed fixtures in
tests/fixtures/flyte2, made by that serializer), and proto inputs must need no flyte at all."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flyteidl2.common import identifier_pb2, phase_pb2
from flyteidl2.notification import definition_pb2
from flyteidl2.task import run_pb2

from flytenotify import flyte2
from flytenotify.v1 import notification_service_pb2 as api

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "flyte2"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
CASES = [c["case"] for c in MANIFEST["cases"]]


def fixture_cases() -> dict[str, Any]:
    """make_fixtures.py's own cases (the notifier objects), so both sides start from one input."""
    pytest.importorskip("flyte")
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules["make_fixtures"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return {c.name: c.notifications for c in module.cases()}


def committed_rules(case: str) -> run_pb2.InlineRuleList:
    return run_pb2.InlineRuleList.FromString((FIXTURES / f"{case}.binpb").read_bytes())


@pytest.mark.parametrize("case", [c for c in CASES if c != "named_rule"])
def test_each_notifier_becomes_exactly_what_the_sdk_serializes(case: str) -> None:
    notifications = fixture_cases()[case]
    converted = flyte2.rules(notifications)
    assert converted.WhichOneof("rules") == "notification_rules"
    assert converted.notification_rules.SerializeToString(deterministic=True) == (FIXTURES / f"{case}.binpb").read_bytes()
    from flyte._internal.runtime.notifications_serde import resolve_notification_settings

    assert converted.notification_rules == resolve_notification_settings(notifications)[1]


def test_named_rule_becomes_the_rule_name() -> None:
    converted = flyte2.rules(fixture_cases()["named_rule"])
    assert converted.WhichOneof("rules") == "notification_rule_name"
    assert converted.notification_rule_name == "oncall-alerts"
    assert (FIXTURES / "named_rule.txt").read_text() == "oncall-alerts\n"


def test_the_fixtures_say_what_the_sdk_does() -> None:
    """What the server relies on, read from the committed bytes (no flyte needed)."""
    (html,) = committed_rules("email_cc_bcc_html").rules
    assert list(html.on_phases) == [phase_pb2.ACTION_PHASE_FAILED, phase_pb2.ACTION_PHASE_TIMED_OUT]
    email = html.delivery_template.email
    assert [r.address for r in email.to] == ["oncall@example.com", "ml-team@example.com"]
    assert [r.address for r in email.cc] == ["lead@example.com"]
    assert [r.address for r in email.bcc] == ["audit@example.com"]
    assert email.WhichOneof("content") == "inline"
    assert email.inline.html_template.startswith("<h1>Run {{.Run.Name}} is {{.Phase}}</h1>")
    (text_only,) = committed_rules("email_cc_bcc_text_only").rules
    assert text_only.delivery_template.email.inline.html_template == "No HTML body"

    (webhook,) = committed_rules("webhook_put").rules
    hook = webhook.delivery_template.webhook
    assert hook.method == definition_pb2.HTTP_METHOD_PUT
    assert dict(hook.headers) == {"X-Flyte-Team": "ml-platform", "Authorization": "Bearer fixture-token"}
    assert json.loads(hook.body_template)["run"] == {
        "name": "{{.Run.Name}}",
        "project": "{{.Run.Project}}",
        "domain": "{{.Run.Domain}}",
    }
    for case, key in [("slack_blocks", "blocks"), ("slack_message", "text"), ("teams_card", "type"), ("teams_message", "title")]:
        (rule,) = committed_rules(case).rules
        assert rule.delivery_template.webhook.method == definition_pb2.HTTP_METHOD_POST
        assert dict(rule.delivery_template.webhook.headers) == {"Content-Type": "application/json"}
        assert key in json.loads(rule.delivery_template.webhook.body_template), case
    (named,) = committed_rules("named_delivery").rules
    assert named.WhichOneof("delivery") == "delivery_config_name"
    assert named.delivery_config_name == "oncall"
    both = committed_rules("email_and_webhook").rules
    assert [(r.delivery_template.HasField("email"), r.delivery_template.HasField("webhook")) for r in both] == [
        (True, False),
        (False, True),
    ]


def test_a_list_of_notifiers_means_the_tuple() -> None:
    cases = fixture_cases()
    as_tuple = cases["email_and_webhook"]
    assert flyte2.rules(list(as_tuple)) == flyte2.rules(as_tuple)


def test_a_named_rule_in_a_tuple_is_refused() -> None:
    cases = fixture_cases()
    with pytest.raises(TypeError, match=r"notifications\[1\]: a NamedRule is a whole rule set"):
        flyte2.rules((cases["webhook_put"], cases["named_rule"]))


def test_something_else_is_refused_naming_the_argument() -> None:
    pytest.importorskip("flyte")
    with pytest.raises(TypeError, match=r"notifications\[0\]: expected a flyte.notify notifier .* got dict"):
        flyte2.rules(({"email": "x"},))
    with pytest.raises(ValueError, match="notifications: expected at least one notifier"):
        flyte2.rules(())


def test_protos_pass_through() -> None:
    rules = committed_rules("email_and_webhook")
    assert flyte2.rules(rules).notification_rules == rules
    assert flyte2.rules(list(rules.rules)).notification_rules == rules
    assert flyte2.rules(rules.rules[1]).notification_rules == run_pb2.InlineRuleList(rules=[rules.rules[1]])
    named = api.Flyte2Rules(notification_rule_name="oncall-alerts")
    assert flyte2.rules(named) is named


def test_a_string_is_refused_pointing_at_named_rule() -> None:
    with pytest.raises(TypeError, match=r"notifications: got str 'oncall-alerts'; .* flyte\.notify\.NamedRule\(name\)"):
        flyte2.rules("oncall-alerts")


def test_phases() -> None:
    assert flyte2.action_phase(phase_pb2.ACTION_PHASE_FAILED) == phase_pb2.ACTION_PHASE_FAILED
    for name in ("FAILED", "failed", " Failed ", "ACTION_PHASE_FAILED", "action_phase_failed"):
        assert flyte2.action_phase(name) == phase_pb2.ACTION_PHASE_FAILED, name
    assert flyte2.action_phase("timed_out") == phase_pb2.ACTION_PHASE_TIMED_OUT
    with pytest.raises(ValueError, match=r"phase: unknown phase 'DONE'; expected one of QUEUED, .*RECOVERED"):
        flyte2.action_phase("DONE")
    with pytest.raises(ValueError, match="unknown phase 'UNSPECIFIED'"):
        flyte2.action_phase("UNSPECIFIED")
    with pytest.raises(TypeError, match="phase: expected an ActionPhase, got True"):
        flyte2.action_phase(True)


def test_flyte_action_phases() -> None:
    models = pytest.importorskip("flyte.models")
    for member in models.ActionPhase:
        assert flyte2.action_phase(member) == phase_pb2.ActionPhase.Value(member.to_protobuf_name())


def test_run_identifiers() -> None:
    want = identifier_pb2.RunIdentifier(project="flytesnacks", domain="development", name="r1")
    assert flyte2.run_id(("flytesnacks", "development", "r1")) == want
    assert flyte2.run_id({"project": "flytesnacks", "domain": "development", "name": "r1"}) == want
    assert flyte2.run_id(want) is want
    with pytest.raises(ValueError, match=r"run: expected \(project, domain, name\), got a tuple of 2"):
        flyte2.run_id(("flytesnacks", "r1"))
    with pytest.raises(TypeError, match=r"run\[2\]: expected a str"):
        flyte2.run_id(("flytesnacks", "development", 3))
    with pytest.raises(TypeError, match="run: expected a RunIdentifier or a .* got str"):
        flyte2.run_id("flytesnacks/development/r1")


def test_flyte_remote_run_and_action() -> None:
    pytest.importorskip("flyte")
    from flyte.remote import Action, Run
    from flyteidl2.workflow import run_definition_pb2

    ident = identifier_pb2.ActionIdentifier(
        run=identifier_pb2.RunIdentifier(org="acme", project="p", domain="d", name="r9"), name="a0"
    )
    run = Run(pb2=run_definition_pb2.Run(action=run_definition_pb2.Action(id=ident)))
    assert flyte2.run_id(run) == ident.run
    assert flyte2.action_id(Action(pb2=run_definition_pb2.Action(id=ident))) == ident


def test_action_identifiers() -> None:
    want = identifier_pb2.ActionIdentifier(
        run=identifier_pb2.RunIdentifier(project="p", domain="d", name="r1"), name="approve"
    )
    assert flyte2.action_id(("p", "d", "r1", "approve")) == want
    assert flyte2.action_id({"run": {"project": "p", "domain": "d", "name": "r1"}, "name": "approve"}) == want
    with pytest.raises(ValueError, match="action: expected .* got a tuple of 3"):
        flyte2.action_id(("p", "d", "r1"))


def test_run_event_request_carries_every_field() -> None:
    at = datetime(2026, 5, 1, 12, 0, 30, 250000, tzinfo=timezone.utc)
    request = flyte2.run_event_request(
        "req-1",
        ("p", "d", "r1"),
        "failed",
        committed_rules("webhook_put"),
        error="boom",
        run_url="https://flyte.example.com/runs/r1",
        duration=timedelta(minutes=2, milliseconds=5),
        occurred_at=at,
        task_name="train",
    )
    assert request == api.EnqueueRunEventRequest(
        request_id="req-1",
        run=identifier_pb2.RunIdentifier(project="p", domain="d", name="r1"),
        phase=phase_pb2.ACTION_PHASE_FAILED,
        error="boom",
        rules=api.Flyte2Rules(notification_rules=committed_rules("webhook_put")),
        run_url="https://flyte.example.com/runs/r1",
        duration={"seconds": 120, "nanos": 5_000_000},
        occurred_at={"seconds": int(at.timestamp()), "nanos": 250_000_000},
        task_name="train",
    )
    with pytest.raises(TypeError, match="error: expected a str, got int"):
        flyte2.run_event_request(
            "r", ("p", "d", "r1"), "failed", committed_rules("webhook_put"),
            error=3, run_url=None, duration=None, occurred_at=None, task_name=None,  # type: ignore[arg-type]
        )


def test_action_paused_request() -> None:
    request = flyte2.action_paused_request(
        "req-2",
        ("p", "d", "r1", "approve"),
        "Deploy model v3 to production?",
        api.Flyte2Rules(notification_rule_name="approvals"),
        description="Accuracy 0.93 on holdout",
        prompt_type="approve",
        run_url=None,
        occurred_at=None,
        task_name=None,
    )
    assert request.action.name == "approve"
    assert request.prompt == "Deploy model v3 to production?"
    assert (request.description, request.prompt_type) == ("Accuracy 0.93 on holdout", "approve")
    assert request.rules.notification_rule_name == "approvals"
    assert not request.HasField("occurred_at")


def test_works_without_flyte_installed() -> None:
    """Given protos, the client needs no flyte; given something else it says to install it."""
    code = f"""
import sys
sys.modules["flyte"] = None  # makes `import flyte...` fail as if it were not installed
from flyteidl2.task import run_pb2
from flytenotify import NotificationClient, flyte2
rules = run_pb2.InlineRuleList.FromString(open({str(FIXTURES / "webhook_put.binpb")!r}, "rb").read())
request = flyte2.run_event_request("r", ("p", "d", "n"), "FAILED", rules, error=None, run_url=None,
                                   duration=None, occurred_at=None, task_name=None)
assert request.rules.notification_rules == rules
try:
    flyte2.rules(object())
except TypeError as e:
    print(e)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("notifications: got object, which is neither a flyteidl2 message nor")
    assert "install flyte or pass an InlineRuleList" in done.stdout


def test_a_stuck_run_deadline_goes_in_the_request() -> None:
    request = flyte2.run_event_request(
        "r", ("p", "d", "r1"), "RUNNING", committed_rules("webhook_put"),
        error=None, run_url=None, duration=None, occurred_at=None, task_name=None, deadline=timedelta(hours=2),
    )
    assert request.phase == phase_pb2.ACTION_PHASE_RUNNING
    assert request.deadline.seconds == 7200
    with pytest.raises(TypeError, match="deadline: expected a datetime.timedelta, got int"):
        flyte2.run_event_request(
            "r", ("p", "d", "r1"), "RUNNING", committed_rules("webhook_put"),
            error=None, run_url=None, duration=None, occurred_at=None, task_name=None, deadline=7200,  # type: ignore[arg-type]
        )
