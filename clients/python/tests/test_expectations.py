"""Missed schedules: a server watching one launch plan (every 3s, grace 1s) lists it; with no
success it goes MISSED and alerts once; a success brings it back, sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from flytenotify import AsyncNotificationClient, ExpectationState, NotificationClient
from flytenotify_server import Server, read_mail, subject_contains, wait_for_mail

LAUNCH_PLAN = "ops/dev/nightly"


@pytest.fixture(scope="module")
def watching_server(flyte_notify_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = f"""
flyteNotify:
  expectations:
    - launchPlan: {LAUNCH_PLAN}
      every: 3s
      grace: 1s
      notify: {{ email: [oncall@example.com] }}
"""
    srv = Server(flyte_notify_bin, tmp_path_factory.mktemp("watching-server"), config)
    yield srv
    srv.stop()


def wait_state(client: NotificationClient, state: ExpectationState, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while client.list_expectations()[0].state is not state:
        assert time.monotonic() < deadline, client.list_expectations()
        time.sleep(0.1)


def test_a_missed_schedule_alerts_once_and_a_success_recovers_it(watching_server: Server) -> None:
    with NotificationClient(watching_server.target) as client:
        [watched] = client.list_expectations()
        assert watched.launch_plan == LAUNCH_PLAN
        assert (watched.every, watched.grace) == (timedelta(seconds=3), timedelta(seconds=1))
        assert watched.recipients == ("oncall@example.com",)
        wait_state(client, ExpectationState.MISSED)
        wait_for_mail(watching_server.maildir, subject_contains(f"{LAUNCH_PLAN} missed its schedule"), 1)
        client.enqueue(
            "ops/dev/nightly-run-1",
            "SUCCEEDED",
            [{"phases": ["FAILED"], "email": {"recipients_email": ["team@example.com"]}}],
            launch_plan={"project": "ops", "domain": "dev", "name": "nightly"},
        )
        wait_state(client, ExpectationState.OK)
        wait_for_mail(watching_server.maildir, subject_contains(f"{LAUNCH_PLAN} succeeded again"), 1)
        missed = [m for m in read_mail(watching_server.maildir) if "missed its schedule" in str(m["Subject"])]
        assert len(missed) == 1

    async def listed() -> list[str]:
        async with AsyncNotificationClient(watching_server.target) as aio:
            return [e.launch_plan for e in await aio.list_expectations()]

    assert asyncio.run(listed()) == [LAUNCH_PLAN]
