"""Who you are: roles against every action on the API and the page, tokens, sign-on, CSRF."""

from __future__ import annotations

import logging
import random
import re
import uuid

import pytest
import sqlalchemy as sa
from conftest import SSO_HEADER, SSO_SETTINGS, make_app, reset_tables
from oracle import NOW

from app.demo import type_fields
from app.models import ApiToken, Role
from app.recorder import Recorder
from app.tokens import create_token, token_hash

OPERATOR = {SSO_HEADER: "ops@example.com"}
DOMAIN_OPERATOR = {SSO_HEADER: "Bob@ML.example.com"}
SSO_VIEWER = {SSO_HEADER: "carol@example.com"}


def engine_of(app):
    with app.app_context():
        return app.extensions["sqlalchemy"].engine


@pytest.fixture
def engine(signed_app):
    return engine_of(signed_app)


@pytest.fixture
def tokens(engine) -> dict[str, str]:
    """A token per role, by role name."""
    return {role.value: create_token(engine, f"{role.value}-bot", role, NOW) for role in Role}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def task_for(engine, action: str) -> uuid.UUID:
    """A task the action applies to: queued for cancel, failed for retry."""
    recorder = Recorder(engine, lambda: NOW)
    task_id = recorder.create(
        "training", tag="exp-7", **type_fields("training", random.Random(3), False)
    )
    if action == "retry":
        recorder.fail("training", task_id, "loss became NaN")
    return task_id


def status_of(engine, task_id: uuid.UUID) -> str:
    with engine.connect() as connection:
        from app.models import TrainingTask

        statement = sa.select(TrainingTask.status).where(TrainingTask.id == task_id)
        return connection.execute(statement).scalar_one()


def csrf_token(client, headers, task_id) -> str:
    """The CSRF token a signed-in operator's page carries."""
    page = client.get(f"/task/{task_id}", headers=headers).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


# Who asks, and the answer every action gets on the API.
API_CASES = {
    "nobody": (None, 401),
    "viewer token": ("viewer", 403),
    "reporter token": ("reporter", 403),
    "operator token": ("operator", 200),
    "signed-in viewer": (SSO_VIEWER, 403),
    "signed-in operator": (OPERATOR, 200),
    "operator by domain": (DOMAIN_OPERATOR, 200),
}
OK = {"cancel": 200, "retry": 201}
# A reporter's cancel is its module confirming that it stopped the task (app/reporting.py).
OWN_ANSWERS = {("reporter token", "cancel"): 200}


@pytest.mark.parametrize("action", ["cancel", "retry"])
@pytest.mark.parametrize("who", list(API_CASES))
def test_every_role_against_every_action_on_the_api(signed_app, engine, tokens, who, action):
    identity, expected = API_CASES[who]
    expected = OWN_ANSWERS.get((who, action), expected)
    client = signed_app.test_client()
    task_id = task_for(engine, action)
    headers = {}
    if isinstance(identity, str):
        headers = bearer(tokens[identity])
    elif isinstance(identity, dict):
        headers = {**identity}
        if expected == 200:  # the sign-on identity writes with the page's CSRF token
            headers["X-CSRFToken"] = csrf_token(client, identity, task_id)
    response = client.post(f"/tasks/{task_id}/{action}", headers=headers)
    assert response.status_code == (OK[action] if expected == 200 else expected)
    if expected != 200:
        assert response.mimetype == "application/problem+json"
        assert "operator role" in response.get_json()["detail"]
        assert status_of(engine, task_id) == ("queued" if action == "cancel" else "failed")


PAGE_CASES = {
    "nobody": (None, 401),
    "signed-in viewer": (SSO_VIEWER, 403),
    "signed-in operator": (OPERATOR, 303),
}


@pytest.mark.parametrize("action", ["cancel", "retry"])
@pytest.mark.parametrize("who", list(PAGE_CASES))
def test_every_role_against_every_action_on_the_page(signed_app, engine, who, action):
    identity, expected = PAGE_CASES[who]
    client = signed_app.test_client()
    task_id = task_for(engine, action)
    form = {"csrf_token": csrf_token(client, OPERATOR, task_id)}
    response = client.post(f"/task/{task_id}/{action}", headers=identity or {}, data=form)
    assert response.status_code == expected
    if expected != 303:
        assert response.mimetype == "text/html"
        assert "operator role" in response.get_data(as_text=True)
    else:
        assert status_of(engine, task_id) == ("cancelled" if action == "cancel" else "failed")
        assert response.headers["Location"].startswith("/task/")


def test_the_401_says_how_to_sign_in_and_asks_for_a_bearer_token(signed_app, engine):
    task_id = task_for(engine, "cancel")
    response = signed_app.test_client().post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.get_json()["detail"]


def test_the_403_names_the_role_needed_and_the_one_held(signed_app, engine, tokens):
    task_id = task_for(engine, "cancel")
    response = signed_app.test_client().post(
        f"/tasks/{task_id}/cancel", headers=bearer(tokens["viewer"])
    )
    assert response.get_json()["detail"] == (
        "This needs the operator role or the reporter role; viewer-bot is a viewer."
    )


def test_the_sign_on_header_is_ignored_from_an_untrusted_client(scratch_url, caplog):
    settings = {**SSO_SETTINGS, "TRUSTED_PROXIES": 0}
    with caplog.at_level(logging.WARNING):
        app = make_app(scratch_url, **settings)
    assert "AUTH_USER_HEADER=X-Forwarded-Email is ignored" in caplog.text
    engine = engine_of(app)
    reset_tables(engine)
    task_id = task_for(engine, "cancel")
    client = app.test_client()
    page = client.get("/", headers=OPERATOR).get_data(as_text=True)
    assert "Not signed in" in page and "ops@example.com" not in page
    assert client.post(f"/tasks/{task_id}/cancel", headers=OPERATOR).status_code == 401
    assert status_of(engine, task_id) == "queued"
    engine.dispose()


@pytest.mark.parametrize(
    ("headers", "role"),
    [
        (OPERATOR, "operator"),
        ({SSO_HEADER: "OPS@example.com"}, "operator"),
        (DOMAIN_OPERATOR, "operator"),
        ({SSO_HEADER: "eve@ml.example.com.evil.test"}, "viewer"),
        ({SSO_HEADER: "ml.example.com"}, "viewer"),
        (SSO_VIEWER, "viewer"),
    ],
)
def test_operators_are_the_listed_users_and_domains(signed_app, headers, role):
    page = signed_app.test_client().get("/", headers=headers).get_data(as_text=True)
    assert f'data-role="{role}"' in page
    assert "Signed in as" in page


BAD_AUTHORIZATIONS = [
    "Bearer",
    "Bearer ",
    "Basic b3BzOnNlY3JldA==",
    "Bearer vt_not-a-token-we-made",
    "Bearer " + "a" * 5000,
    "Bearer vt_ünïcode",
    "Bearer two words",
    "bearer\tvt_tab",
]


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATIONS)
@pytest.mark.parametrize("path", ["/tasks", "/", "/tasks/counts"])
def test_a_malformed_or_unknown_token_is_401_never_500(signed_app, authorization, path, caplog):
    with caplog.at_level(logging.DEBUG):
        response = signed_app.test_client().get(path, headers={"Authorization": authorization})
    assert response.status_code == 401
    secret = authorization.partition(" ")[2]
    if len(secret) > 3:
        assert secret not in response.get_data(as_text=True)
        assert secret not in caplog.text


def test_a_revoked_token_is_401_and_its_secret_never_reaches_the_log(
    signed_app, engine, tokens, caplog
):
    client = signed_app.test_client()
    token = tokens["operator"]
    task_id = task_for(engine, "cancel")
    with caplog.at_level(logging.DEBUG):
        assert client.get("/tasks", headers=bearer(token)).status_code == 200
        runner = signed_app.test_cli_runner()
        result = runner.invoke(args=["tokens", "revoke", "operator-bot"])
        assert result.exit_code == 0, result.output
        assert client.get("/tasks", headers=bearer(token)).status_code == 401
        assert client.post(f"/tasks/{task_id}/cancel", headers=bearer(token)).status_code == 401
    assert token not in caplog.text
    assert status_of(engine, task_id) == "queued"


def test_auth_required_turns_anonymous_reading_off(scratch_url):
    app = make_app(scratch_url, **SSO_SETTINGS, AUTH_REQUIRED=True)
    engine = engine_of(app)
    reset_tables(engine)
    token = create_token(engine, "reader", Role.VIEWER, NOW)
    client = app.test_client()
    api = client.get("/tasks")
    assert api.status_code == 401 and api.mimetype == "application/problem+json"
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 401 and page.mimetype == "text/html"
    assert "sign-in" in page.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/tasks", headers=bearer(token)).status_code == 200
    assert client.get("/", headers=SSO_VIEWER).status_code == 200
    engine.dispose()


# -- CSRF ---------------------------------------------------------------------------------------


def test_a_signed_in_write_without_the_csrf_token_is_refused(signed_app, engine):
    task_id = task_for(engine, "cancel")
    client = signed_app.test_client()
    for path in (f"/task/{task_id}/cancel", f"/tasks/{task_id}/cancel"):
        response = client.post(path, headers=OPERATOR)
        assert response.status_code == 400
        assert "CSRF" in response.get_data(as_text=True)
    assert status_of(engine, task_id) == "queued"


def test_a_cross_site_form_post_is_refused(signed_app, engine):
    """What another site's auto-submitting form sends: the proxy's identity, no token of ours
    (and one from a session that is not the browser's)."""
    task_id = task_for(engine, "cancel")
    attacker = signed_app.test_client()
    stolen = csrf_token(attacker, OPERATOR, task_id)  # valid in the attacker's session only
    victim = signed_app.test_client()
    headers = {**OPERATOR, "Origin": "https://evil.example", "Referer": "https://evil.example/"}
    for data in ({}, {"csrf_token": stolen}):
        response = victim.post(f"/task/{task_id}/cancel", headers=headers, data=data)
        assert response.status_code == 400
    assert status_of(engine, task_id) == "queued"


def test_a_bearer_token_needs_no_csrf_token(signed_app, engine, tokens):
    task_id = task_for(engine, "cancel")
    client = signed_app.test_client()
    response = client.post(f"/tasks/{task_id}/cancel", headers=bearer(tokens["operator"]))
    assert response.status_code == 200
    assert status_of(engine, task_id) == "cancelled"


# -- what the page shows ------------------------------------------------------------------------


def test_the_page_shows_who_you_are(signed_app, tokens):
    client = signed_app.test_client()
    assert "Not signed in · viewer" in client.get("/").get_data(as_text=True)
    page = client.get("/", headers=OPERATOR).get_data(as_text=True)
    assert "Signed in as <strong>ops@example.com</strong> · operator" in page
    page = client.get("/", headers=bearer(tokens["reporter"])).get_data(as_text=True)
    assert "Token <strong>reporter-bot</strong> · reporter" in page


def test_a_viewer_sees_no_buttons_and_an_operator_sees_them(signed_app, engine):
    queued = task_for(engine, "cancel")
    failed = task_for(engine, "retry")
    client = signed_app.test_client()
    for headers in ({}, SSO_VIEWER):
        assert "action-form" not in client.get("/", headers=headers).get_data(as_text=True)
        page = client.get(f"/task/{queued}", headers=headers).get_data(as_text=True)
        assert "action-form" not in page
    listed = client.get("/", headers=OPERATOR).get_data(as_text=True)
    assert f'id="cancel-{queued}"' in listed and f'id="retry-{failed}"' in listed
    assert f'id="retry-{queued}"' not in listed and f'id="cancel-{failed}"' not in listed


def test_two_people_never_share_a_rendered_list(signed_app, engine):
    task_for(engine, "cancel")
    client = signed_app.test_client()
    operator_page = client.get("/", headers=OPERATOR)
    viewer_page = client.get("/", headers=SSO_VIEWER)
    assert operator_page.headers["ETag"] != viewer_page.headers["ETag"]
    assert "action-form" not in viewer_page.get_data(as_text=True)
    assert SSO_HEADER in viewer_page.vary


@pytest.mark.parametrize(("embed_actions", "shown"), [(False, False), (True, True)])
def test_the_embed_is_read_only_unless_embed_actions(scratch_url, embed_actions, shown):
    app = make_app(scratch_url, **SSO_SETTINGS, EMBED_ACTIONS=embed_actions)
    engine = engine_of(app)
    reset_tables(engine)
    task_id = task_for(engine, "cancel")
    client = app.test_client()
    assert ("action-form" in client.get("/embed", headers=OPERATOR).get_data(as_text=True)) is shown
    page = client.get(f"/embed/task/{task_id}", headers=OPERATOR).get_data(as_text=True)
    assert ("action-form" in page) is shown
    engine.dispose()


# -- tokens -------------------------------------------------------------------------------------


def test_tokens_are_made_on_the_command_line_and_kept_only_as_hashes(signed_app, engine):
    runner = signed_app.test_cli_runner()
    result = runner.invoke(args=["tokens", "create", "--name", "ci-bot", "--role", "operator"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("vt_") and len(token) > 40
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(sa.select(ApiToken))]
    assert len(rows) == 1
    assert rows[0]["token_hash"] == token_hash(token)
    assert all(token not in str(value) for value in rows[0].values())
    client = signed_app.test_client()
    assert client.get("/tasks", headers=bearer(token)).status_code == 200


def test_tokens_list_shows_name_role_created_and_last_used_never_the_token(signed_app, tokens):
    signed_app.test_client().get("/tasks", headers=bearer(tokens["viewer"]))
    result = signed_app.test_cli_runner().invoke(args=["tokens", "list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert set(lines) == {"viewer-bot", "operator-bot", "reporter-bot"}
    assert " viewer " in lines["viewer-bot"]
    # Used once: a time under "last used"; never used: a dash.
    assert lines["viewer-bot"].split()[4] != "-" and lines["operator-bot"].split()[4] == "-"
    assert not any(token in result.output for token in tokens.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tokens", "create", "--name", "viewer-bot", "--role", "viewer"], "exists"),
        (["tokens", "create", "--name", "x", "--role", "admin"], "admin"),
        (["tokens", "revoke", "nobody"], "no token in use"),
    ],
)
def test_token_commands_refuse_what_cannot_be(signed_app, tokens, args, message):
    result = signed_app.test_cli_runner().invoke(args=args)
    assert result.exit_code != 0
    assert message in result.output
