"""Grouping into digests: with flyteNotify.grouping.email, failures of one project and domain
wait together, list as GROUPED under one digest id, and go out as one email."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flytenotify import DeliveryState, NotificationClient
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
