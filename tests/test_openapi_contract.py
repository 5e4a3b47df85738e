"""The OpenAPI document against the running hub: schemathesis sends requests generated from it to a real hub process
and checks each answer against it; requests made malformed on purpose must never get a 500."""

from __future__ import annotations

import json
import urllib.request

import pytest
from support import need
from support_procs import HubProc

try:
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance
except ImportError:  # the [test] extra brings it
    schemathesis = None

# Streams and protocols of their own: an SSE stream, the agent WebSocket, MCP's JSON-RPC session.
SKIP = {("GET", "/api/v1/events"), ("GET", "/api/v1/agent/ws"), ("POST", "/mcp")}
EXAMPLES = 6


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    need(schemathesis is not None, "schemathesis (pip install -e '.[test]')")
    tmp = tmp_path_factory.mktemp("contract")
    hub = HubProc(tmp, 'push = true\n\n[agent]\nenabled = false\n')
    token = hub.user_token("contract", "admin", "admin")
    hub.start()
    yield hub, token
    hub.stop()


def _document(hub: HubProc, token: str) -> dict:
    request = urllib.request.Request(hub.base + "/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _operations(doc: dict):
    schema = schemathesis.openapi.from_dict(doc)
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIP:
            yield operation


def _run(operation, mode, hub: HubProc, token: str, checks) -> list[str]:
    problems: list[str] = []

    @hypothesis.settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, phases=[hypothesis.Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(base_url=hub.base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        try:
            case.validate_response(response, checks=checks)
        except (Exception, BaseExceptionGroup) as err:  # one line per broken answer, so every operation is tried
            problems.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {type(err).__name__}: {str(err)[:600]}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # nothing to make malformed (no parameters, no body): nothing to send
        pass
    return problems


def test_generated_requests_get_answers_the_document_describes(hub):
    hub_proc, token = hub
    doc = _document(hub_proc, token)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    problems = [p for op in _operations(doc) for p in _run(op, GenerationMode.POSITIVE, hub_proc, token, checks)]
    assert not problems, "\n".join(problems[:40])


def test_malformed_requests_never_get_a_server_error(hub):
    hub_proc, token = hub
    doc = _document(hub_proc, token)
    problems = [p for op in _operations(doc) for p in _run(op, GenerationMode.NEGATIVE, hub_proc, token, [not_a_server_error])]
    assert not problems, "\n".join(problems[:40])
    log = hub_proc.proc.text() if hub_proc.proc is not None else ""
    assert "Traceback" not in log, log[-4000:]
