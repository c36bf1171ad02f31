"""Schemathesis over /openapi.json against the WSGI app: no 5xx, and responses conform to the document.

Driven through schemathesis's Python API (`as_strategy` + Hypothesis), bounded to 50 examples per operation and
generation mode. (Its pytest plugin, `from_fixture`, does not run under pytest 9.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from tests.webhook.helpers import API_TOKEN, LEGACY_SECRET

AUTHENTICATED = {"Authorization": f"Bearer {API_TOKEN}", "X-Callback-Secret": LEGACY_SECRET}


@pytest.fixture
def api_schema(make_app, settings, job):
    # The legacy secret lets generated callbacks past authentication, down to validation and the domain.
    app = make_app(settings=settings.model_copy(update={"webhook_legacy_secret": SecretStr(LEGACY_SECRET)}))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    # A generated body over the size limit is rejected with 413, which is a refusal like 400/422.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("headers", [None, AUTHENTICATED], ids=["as-generated", "authenticated"])
def test_generated_requests_never_get_a_server_error(api_schema, mode, headers):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 6  # every route but /openapi.json itself, which schemathesis skips
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and operation.path in ("/healthz", "/readyz"):
            continue  # no inputs: nothing can be made invalid

        # A read operation with only optional query parameters: with our fixed Authorization header, schemathesis's
        # "invalid" cases (the bearer removed, an extra query key it cannot send) arrive as valid requests, and the
        # 200 is right. Every other check (no 5xx, responses conform) still runs.
        excluded = [negative_data_rejection] if headers and operation.path == "/api/dead-letters" else []

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):  # hypothesis refuses defaults, so no `excluded=excluded`; run() is called in this iteration
            case.call_and_validate(headers=headers, excluded_checks=excluded)  # noqa: B023

        run()
