"""Schemathesis against the app's own OpenAPI schema: whatever it sends, never a 5xx.

Every operation is called with generated (mostly invalid) input, authenticated as a user who
owns a task, a channel and a notification, so the handlers past validation run too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from cloud_kit import Account
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.runtime import Runtime


@pytest.fixture
def fuzz_account(runtime: Runtime, make_user: Callable[..., Account]) -> Account:
    return make_user(plan="pro")


@pytest.fixture
def api_schema(runtime: Runtime) -> Any:
    quiet = Runtime(
        settings=runtime.settings.replace(embedded_worker=False),
        engine=runtime.engine,
        sessions=runtime.sessions,
        waker=runtime.waker,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(runtime=quiet))


def test_no_input_makes_the_server_fail(api_schema: Any, fuzz_account: Account) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    seen: dict[str, set[int]] = {}
    for operation in operations:
        label = operation.label

        @given(case=operation.as_strategy())
        @settings(
            max_examples=50,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case: Any) -> None:
            response = case.call(headers=fuzz_account.headers)
            seen.setdefault(label, set()).add(response.status_code)  # noqa: B023 - runs in this turn
            case.validate_response(response, checks=[not_a_server_error])

        call()
    # The fuzzing reached the handlers, not only the validators.
    assert {op for op, codes in seen.items() if codes & {200, 201, 202, 204}} >= {
        "POST /v1/events",
        "POST /v1/tasks",
        "GET /v1/tasks",
        "GET /v1/notifications",
    }
