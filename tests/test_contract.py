"""The published contract: /openapi.json against the form, the OpenAPI schema and the app.

Schemathesis runs with every check against a live server over the known tasks, on every
engine, with the settings of schemathesis.toml, as README's "The contract" runs it by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser_support import serving_app
from conftest import IN_CI
from openapi_spec_validator import validate
from oracle import NOW, insert_tasks, known_tasks
from wtforms.validators import NumberRange, Optional

from app.filters import PARAMETERS, REPEATABLE, StrictIntegerField, TaskFilterForm
from app.models import Role
from app.openapi import filter_parameters, openapi_path, years_from
from app.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Enough to reach every phase and check on every operation; the whole run stays in seconds.
MAX_EXAMPLES = 25
# CI explores the same cases on every run, as the Hypothesis profile does.
CI_SEED = 20261128


@pytest.fixture(scope="module")
def description() -> dict:
    """The description as the server sends it."""
    from conftest import make_app

    app = make_app("sqlite://")
    return app.test_client().get("/openapi.json").get_json()


def parameter_names(description: dict, path: str) -> set[str]:
    """The query parameters an operation of the description reads."""
    components = description["components"]["parameters"]
    names = set()
    for parameter in description["paths"][path]["get"].get("parameters", []):
        if "$ref" in parameter:
            parameter = components[parameter["$ref"].rsplit("/", 1)[1]]
        if parameter["in"] == "query":
            names.add(parameter["name"])
    return names


def test_the_description_is_valid_openapi_3_1(description):
    validate(description)
    assert description["openapi"].startswith("3.1")


def test_every_form_field_is_a_parameter_of_tasks_and_the_reverse(description):
    assert parameter_names(description, "/tasks") == PARAMETERS


def test_repeatable_parameters_are_arrays_sent_as_repeats(description):
    for name, parameter in description["components"]["parameters"].items():
        repeats = parameter["schema"]["type"] == "array"
        assert repeats == (name in REPEATABLE), name
        if repeats:
            assert (parameter["style"], parameter["explode"]) == ("form", True)


def test_a_new_form_field_is_described_with_its_range():
    class WiderForm(TaskFilterForm):
        priority = StrictIntegerField(
            "Priority", validators=[Optional(), NumberRange(1, 5)], description="How urgent."
        )

    parameter = filter_parameters(WiderForm)["priority"]
    assert parameter["schema"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert parameter["description"] == "How urgent."


def test_every_json_endpoint_of_the_api_is_described(app, description):
    served = {
        openapi_path(rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.") or rule.endpoint.endswith("_json")
    }
    assert served | {"/openapi.json"} == set(description["paths"])


@pytest.mark.parametrize("earliest", [0, 1, 999, 1970, 2000, 9999])
def test_the_year_pattern_admits_exactly_the_years_from_the_earliest(earliest):
    pattern = re.compile(f"^{years_from(earliest)}$")
    assert [year for year in range(10000) if pattern.match(f"{year:04d}")] == list(
        range(earliest, 10000)
    )


@pytest.mark.parametrize(
    "path",
    ["/tasks", "/tasks/counts", "/tasks.csv", "/tasks.ndjson", "/tasks/histogram", "/tasks/errors"],
)
def test_a_parameter_an_operation_does_not_list_is_refused(client, description, path):
    values = {"limit": "5", "offset": "5", "cursor": "abc"}
    for name in PARAMETERS - parameter_names(description, path):
        with client.get(path, query_string={name: values[name]}) as response:
            assert response.status_code == 422, name
            assert response.get_json()["errors"][0]["parameter"] == name


@pytest.mark.parametrize("path", ["/tasks", "/tasks/counts", "/tasks.csv", "/tasks/errors"])
def test_integer_parameters_take_their_described_range_and_nothing_past_it(
    client, description, path
):
    for name in parameter_names(description, path):
        schema = description["components"]["parameters"][name]["schema"]
        if schema.get("type") != "integer":
            continue
        low, high = schema["minimum"], schema["maximum"]
        for value, status in [(low, 200), (high, 200), (low - 1, 422), (high + 1, 422)]:
            with client.get(path, query_string={name: str(value)}) as response:
                assert response.status_code == status, (name, value)


def test_the_api_page_loads_only_vendored_files_under_a_strict_policy(client):
    response = client.get("/api")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "img-src 'self' data:;" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    page = response.get_data(as_text=True)
    assert "<script>" not in page and "https://" not in page.split("<main", 1)[0]
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "api.js"]:
        url = next(part for part in page.split('"') if part.endswith(asset))
        assert client.get(url).status_code == 200, url


def test_the_list_page_links_to_the_api_page(client):
    assert 'href="/api"' in client.get("/").get_data(as_text=True)


@pytest.fixture
def operated_app(scratch_app):
    """The known tasks in a database of their own, and an operator's and a reporter's token:
    Schemathesis cancels, retries, creates and moves the tasks it finds, which the shared
    known database must not see."""
    with scratch_app.app_context():
        engine = scratch_app.extensions["sqlalchemy"].engine
        insert_tasks(engine, known_tasks())
        tokens = {
            "CONTRACT_OPERATOR_TOKEN": create_token(engine, "schemathesis", Role.OPERATOR, NOW),
            "CONTRACT_REPORTER_TOKEN": create_token(
                engine, "schemathesis-module", Role.REPORTER, NOW
            ),
        }
    return scratch_app, tokens


def test_schemathesis_finds_nothing_against_a_live_server(operated_app):
    app, tokens = operated_app
    with serving_app(app) as base_url:
        command = [
            str(SCHEMATHESIS),
            "run",
            f"{base_url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--no-color",
        ]
        if IN_CI:
            command += ["--seed", str(CI_SEED)]
        # From the project's folder, Schemathesis reads schemathesis.toml (hooks included);
        # the hooks send each operation the token of the role it needs.
        environment = {**os.environ, **tokens}
        run = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment
        )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert "No issues found" in run.stdout, run.stdout[-5000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected and tested and selected[1] == selected[2] == tested[1], run.stdout[-5000:]
