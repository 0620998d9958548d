"""The gateway's declared surface: the checked-in OpenAPI document against the routes the app
registers, its settings (secrets masked, limits consistent) and `router gateway`'s refusal to
serve without sources. No broker: the app is built, not started."""

from __future__ import annotations

import re

import orjson
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from router.cli import app as cli
from streams.gateway import openapi
from streams.gateway.app import create_app
from streams.settings import RouterSettings

SECRET = "0123456789abcdef-secret"


def routes() -> set[tuple[str, str]]:
    app = create_app(RouterSettings(gateway_secrets={"acme": [SECRET]}))
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None  # HEAD comes with each GET
    }


def test_the_checked_in_document_is_what_the_code_builds() -> None:
    assert openapi.FILE.read_bytes() == openapi.render(), (
        "streams/gateway/openapi.json is stale: python -m streams.gateway.openapi"
    )


def test_the_document_describes_exactly_the_registered_routes() -> None:
    doc = orjson.loads(openapi.FILE.read_bytes())
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == routes()


def test_every_reference_resolves() -> None:
    text = openapi.FILE.read_text()
    doc = orjson.loads(text)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref


def test_secrets_come_from_json_in_the_environment_and_stay_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = orjson.dumps({"acme": [SECRET, SECRET + "2"]}).decode()
    monkeypatch.setenv("ROUTER_GATEWAY_SECRETS", secrets)
    settings = RouterSettings()
    assert [s.get_secret_value() for s in settings.gateway_secrets["acme"]] == [
        SECRET, SECRET + "2"
    ]  # fmt: skip
    assert SECRET not in repr(settings)
    assert SECRET not in orjson.dumps(settings.masked(), default=str).decode()


def test_meta_secrets_come_from_the_environment_and_stay_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROUTER_GATEWAY_META_APP_SECRETS", orjson.dumps([SECRET]).decode())
    monkeypatch.setenv("ROUTER_GATEWAY_META_VERIFY_TOKEN", "verify-" + SECRET)
    settings = RouterSettings()
    assert [s.get_secret_value() for s in settings.gateway_meta_app_secrets] == [SECRET]
    token = settings.gateway_meta_verify_token
    assert token is not None
    assert token.get_secret_value() == "verify-" + SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in orjson.dumps(settings.masked(), default=str).decode()


@pytest.mark.parametrize(
    "bad",
    [
        {"gateway_meta_app_secrets": ["too-short"]},
        {"gateway_meta_app_secrets": [SECRET] * 5},
        {"gateway_meta_verify_token": "too-sho"},
        {"gateway_secrets": {"acme": ["too-short"]}},
        {"gateway_secrets": {"no spaces": [SECRET]}},
        {"gateway_secrets": {"acme": []}},
        {"gateway_rate_burst": 10, "gateway_batch_max_items": 11},
    ],
)
def test_bad_gateway_settings_are_refused_without_echoing_secrets(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as exc:
        RouterSettings(**bad)  # type: ignore[arg-type]
    assert "too-short" not in str(exc.value)


def test_router_gateway_refuses_to_serve_without_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTER_GATEWAY_SECRETS", raising=False)
    monkeypatch.delenv("ROUTER_GATEWAY_META_APP_SECRETS", raising=False)
    result = CliRunner().invoke(cli, ["gateway"])
    assert result.exit_code == 2
    assert "ROUTER_GATEWAY_SECRETS" in result.output
    assert "ROUTER_GATEWAY_META_APP_SECRETS" in result.output
