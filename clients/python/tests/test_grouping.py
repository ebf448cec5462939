"""Grouping into digests: with flyteNotify.grouping.email, failures of one project and domain
wait together, list as GROUPED under one digest id, and go out as one email. preview_digest
(sync and async) shows such a digest without sending it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from flytenotify import AsyncNotificationClient, DeliveryState, InvalidArgumentError, NotificationClient
from flytenotify_server import Server, read_mail, subject_contains, wait_for_mail


@pytest.fixture(scope="module")
def grouping_server(flyte_notify_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = """
flyteNotify:
  grouping:
    email: { groupBy: [project, domain], groupWait: 2s }
"""
    srv = Server(flyte_notify_bin, tmp_path_factory.mktemp("grouping-server"), config)
    yield srv
    srv.stop()


def test_failures_of_one_project_go_out_as_one_digest(grouping_server: Server, execution_name: str) -> None:
    with NotificationClient(grouping_server.target) as client:
        ids = []
        for i in range(3):
            result = client.enqueue(
                f"digestp/dev/{execution_name}-{i}",
                "FAILED",
                [{"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}],
            )
            ids.extend(result.delivery_ids)
        waiting = [d for d in client.list_pending(filters="eq(state,grouped)") if d.id in ids]
        assert [d.state for d in waiting] == [DeliveryState.GROUPED] * 3
        digests = {d.digest_id for d in waiting}
        assert len(digests) == 1 and "" not in digests
        wait_for_mail(grouping_server.maildir, subject_contains("3 executions FAILED in digestp/dev"), 1)
        assert [client.get_delivery(i).delivery.state for i in ids] == [DeliveryState.DELIVERED] * 3
        digest_mails = [m for m in read_mail(grouping_server.maildir) if "digestp/dev" in str(m["Subject"])]
        assert len(digest_mails) == 1


EMAIL = {"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}


def test_preview_digest_renders_one_email_for_the_executions_and_sends_nothing(
    grouping_server: Server, execution_name: str
) -> None:
    executions = [
        {"execution_id": f"previewp/dev/{execution_name}-{i}", "phase": "FAILED", "error": "learning rate must be positive"}
        for i in range(3)
    ]
    with NotificationClient(grouping_server.target) as client:
        messages = client.preview_digest(executions, EMAIL)
        assert len(messages) == 1
        assert messages[0].channel == "email"
        assert messages[0].subject == "Flyte: 3 executions FAILED in previewp/dev"
        assert messages[0].text_body.count("learning rate must be positive") == 3
        assert not [m for m in read_mail(grouping_server.maildir) if "previewp/dev" in str(m["Subject"])]
        assert not [d for d in client.list_pending() if d.project == "previewp"]

        with pytest.raises(InvalidArgumentError) as caught:
            client.preview_digest([], EMAIL)
        assert [v.field for v in caught.value.field_violations] == ["executions"]


def test_async_preview_digest_names_the_execution_it_refuses(grouping_server: Server, execution_name: str) -> None:
    async def main() -> None:
        async with AsyncNotificationClient(grouping_server.target) as client:
            good = {"execution_id": f"previewp/dev/{execution_name}", "phase": "FAILED"}
            messages = await client.preview_digest([good, good], EMAIL)
            assert messages[0].subject == "Flyte: 2 executions FAILED in previewp/dev"
            await client.preview_digest([good, {"execution_id": f"previewp/dev/{execution_name}", "phase": "RUNNING"}], EMAIL)

    with pytest.raises(InvalidArgumentError) as caught:
        asyncio.run(main())
    assert [v.field for v in caught.value.field_violations] == ["executions[1].phase"]
