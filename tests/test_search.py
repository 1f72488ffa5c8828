"""Search with `q`: ids, their first characters, words and phrases, on every engine, as the
oracle matches them; bad searches answer 422; the page jumps to a task, marks the words and
says when nothing matches."""

from __future__ import annotations

import csv
import io
import random
import re
import sys
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import jsonschema_rs
import pytest
import sqlalchemy as sa
from conftest import every_id, statements_run
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import NOW, expected, facets, insert_tasks, make_task
from werkzeug.datastructures import MultiDict

from app.filters import TaskFilter, parse_filter, read_cursor
from app.models import MODEL_FOR_TYPE, TrainingTask, db
from app.openapi import search_schema
from app.query import pages
from app.query import search as query_search
from app.query.lookups import with_lookups
from app.query.pages import page_among_newest
from app.query.shapes import page_shape_of
from app.search import SearchError, parse_search, valid_search_pattern

WORD_SEARCHES = [
    "llama",
    "LLAMA",
    "llama mmlu",
    '"support tickets"',
    '"tickets support"',
    '"3 mini 4k"',
    "pythia-1.4b",
    "script",
    "alert 1",
    "ünïcode",
    "ÜNÏCODE",
    "bold",
    "from",
    "lora qlora",
    "zzzq",
    # Words that are also statuses: found in the words alone, never in the status.
    "failed",
    "running",
    "cancelled",
]


def search_filter(q: str, **fields) -> TaskFilter:
    return TaskFilter(search=parse_search(q), **fields)


def listed_ids(client, args) -> list[str]:
    response = client.get("/tasks", query_string=[*args, ("limit", "100"), ("count", "exact")])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["total"]["relation"] == "eq"
    return [item["id"] for item in body["items"]]


@pytest.mark.parametrize("q", WORD_SEARCHES)
def test_words_and_phrases_list_what_the_oracle_finds(client, tasks, q):
    assert listed_ids(client, [("q", q)]) == expected(tasks, search_filter(q))[:100]


@pytest.mark.parametrize("q", ["llama", '"support tickets"', "script"])
def test_a_search_combines_with_the_other_filters(client, tasks, q):
    args = [("q", q), ("status", "failed"), ("status", "running"), ("within_hours", "720")]
    wanted = search_filter(q, statuses=("running", "failed"), within_hours=720)
    assert listed_ids(client, args) == expected(tasks, wanted)


@pytest.mark.parametrize("q", ["llama", "nightly", '"support tickets"'])
def test_a_search_among_stalled_tasks_finds_what_the_oracle_finds(client, tasks, q):
    """Stalled tasks are read from their (status, updated_at) index and each one's words
    tested: the same tasks as the oracle's."""
    wanted = expected(tasks, search_filter(q, stalled=True))
    assert wanted, "the known tasks hold stalled matches"
    assert listed_ids(client, [("q", q), ("stalled", "true")]) == wanted
    body = client.get("/tasks/counts", query_string={"q": q, "stalled": "true"}).get_json()
    assert body == facets(tasks, search_filter(q, stalled=True))


# The last one's fifth word is past the terms the words tables are asked for: its text is
# tested on the rows the first four find.
@pytest.mark.parametrize(
    "q", ["llama", "llama mmlu", '"3 mini 4k"', '"support tickets"', "llama 3 1 8b support"]
)
@pytest.mark.parametrize("tag", [None, "exp-2"], ids=["no tag", "a tag"])
def test_a_search_s_stalled_counts_are_the_oracle_s(client, tasks, q, tag):
    """Capped counts, the chip and every count of `stalled=true`: on PostgreSQL and MariaDB
    read from the running tasks that hold the words, beside a tag from the tag's."""
    args = [("q", q), *([("tag", tag)] if tag else [])]
    wanted = search_filter(q, stalled=True, tags=(tag,) if tag else ())
    body = client.get("/tasks/counts", query_string=args).get_json()
    assert body["stalled"] == {"value": len(expected(tasks, wanted)), "relation": "eq"}
    body = client.get("/tasks/counts", query_string=[*args, ("stalled", "true")]).get_json()
    assert body == facets(tasks, wanted)


def test_a_search_s_stalled_count_starts_from_the_running_tasks_that_hold_its_words(
    app, engine_kind
):
    """In the words tables where the engine has them, a range of each table's running tasks
    holding the words, rather than every stalled task of the table with its text tested;
    beside a tag, the tag's running tasks."""

    def stalled_counts(args: dict[str, str]) -> list[str]:
        sent = counts_statements(app, args)
        return [s for s in sent if "llama" in s and "updated_at" in s]

    stalled, stalled_tag = (
        stalled_counts({"q": "llama"}),
        stalled_counts({"q": "llama", "tag": "exp-2"}),
    )
    assert stalled and stalled_tag
    if engine_kind == "sqlite":
        assert all("_search MATCH" in statement for statement in stalled)
        return
    assert all("_words AS word_0" in statement for statement in stalled)
    assert all("word_0.status = 'running'" in statement for statement in stalled)
    assert not any("word_0.status = 'running'" in statement for statement in stalled_tag)


@pytest.mark.parametrize("q", ["llama", "script", "zzzq", '"support tickets"'])
def test_counts_follow_the_search(client, tasks, q):
    body = client.get("/tasks/counts", query_string={"q": q, "count": "exact"}).get_json()
    assert body == facets(tasks, replace(search_filter(q), exact_count=True))


@pytest.mark.parametrize("q", ["llama", "llama mmlu", "failed", "zzzq", '"support tickets"'])
@pytest.mark.parametrize("statuses", [(), ("failed",), ("queued", "cancelled")])
def test_capped_counts_of_a_search_follow_it(client, tasks, q, statuses):
    """Capped counts, which SQLite reads from its search index alone, against the oracle."""
    args = [("q", q), *(("status", status) for status in statuses)]
    body = client.get("/tasks/counts", query_string=args).get_json()
    assert body == facets(tasks, search_filter(q, statuses=statuses))
    total = client.get("/tasks", query_string=[*args, ("offset", "1")]).get_json()["total"]
    assert total == body["total"]
    exact = [*args, ("offset", "1"), ("count", "exact")]
    assert client.get("/tasks", query_string=exact).get_json()["total"] == body["total"]


@pytest.mark.parametrize("gather_below", [1, 10**9], ids=["walked", "gathered"])
@pytest.mark.parametrize("q", ["llama", "llama mmlu", '"support tickets"', "cuda memory", "ai"])
def test_a_search_walked_or_gathered_finds_what_the_oracle_finds(
    client, tasks, monkeypatch, gather_below, q
):
    """MariaDB walks the tables where many tasks hold the words, testing each row in its
    words tables, and gathers the few matches of the others (`look_up_words_reach`): both
    ways list and count what the oracle finds, with a window and with statuses too."""
    monkeypatch.setattr(query_search, "GATHER_BELOW", gather_below)
    assert listed_ids(client, [("q", q)]) == expected(tasks, search_filter(q))
    args = [("q", q), ("within_hours", "720"), ("status", "failed"), ("status", "running")]
    body = client.get("/tasks/counts", query_string=args).get_json()
    window = search_filter(q, within_hours=720, statuses=("failed", "running"))
    assert body == facets(tasks, window)
    assert listed_ids(client, args) == expected(tasks, window)


@pytest.mark.parametrize("gather_below", [1, 10**9], ids=["walked", "gathered"])
@pytest.mark.parametrize("q", ["llama", "cuda memory", '"support tickets"', '"out of memory"'])
@pytest.mark.parametrize("status", ["failed", "queued"])
def test_a_search_among_a_rare_status_is_tested_in_the_words_tables(
    app, client, tasks, engine_kind, monkeypatch, gather_below, q, status
):
    """Beside one status few tasks have, PostgreSQL tests each row it walks in its words
    tables as MariaDB does, or gathers a table's few matches (`page_probes`), where its
    trigram index would gather and sort every match among them: the list and the counts are
    the oracle's, and every page's statement reads the words tables."""
    monkeypatch.setattr(query_search, "GATHER_BELOW", gather_below)
    args = [("q", q), ("status", status)]
    among = search_filter(q, statuses=(status,))
    with statements_run(app) as sent:
        assert listed_ids(client, args) == expected(tasks, among)
    assert client.get("/tasks/counts", query_string=args).get_json() == facets(tasks, among)
    if engine_kind != "sqlite":
        pages = [statement for statement in sent if "ORDER BY" in statement]
        assert pages and all("_words" in statement for statement in pages), pages


@pytest.mark.parametrize("path", ["/tasks/counts", "/tasks/histogram", "/tasks/errors"])
def test_what_reads_every_match_of_a_search_among_a_rare_status_is_not_probed_row_by_row(
    app, client, tasks, engine_kind, path
):
    """PostgreSQL probes the words tables row by row for a page alone: the counts, the chart
    and the top errors (but for a page of their tasks) read every match of a month's failed
    tasks, which its trigram index gathers sooner (probed, the counts of `llama` took ten
    times as long at a million)."""
    args = [("q", "llama"), ("status", "failed"), ("within_hours", "720")]
    with statements_run(app) as sent:
        assert client.get(path, query_string=args).status_code == 200
    every_match = [statement for statement in sent if "ORDER BY" not in statement]
    probed = [s for s in every_match if re.search(r"_words\b.*IS NOT NULL", s, re.S)]
    assert bool(probed) == (engine_kind == "mariadb"), probed


def counts_statements(app, args: dict[str, str]) -> list[str]:
    """The SQL statements `/tasks/counts` sends for `args`."""
    with statements_run(app) as sent:
        response = app.test_client().get("/tasks/counts", query_string=args)
    assert response.status_code == 200
    return sent


@pytest.mark.parametrize("window", [None, "720"], ids=["all time", "30 days"])
def test_a_search_s_chips_are_counted_in_its_index_or_gathered_once(app, engine_kind, window):
    """The chips of words alone are capped counts of the search index alone: FTS5 on SQLite,
    the words tables on PostgreSQL and MariaDB. Otherwise PostgreSQL's trigram index hands
    over every match before a row is read, and the chips are one statement grouped by
    status, besides the stalled count; SQLite counts each chip, a range of its (status,
    created_at) index, and MariaDB each chip, a walk whose rows are tested in its words
    tables, as capped counts stop at 10,001 where a grouped one reads all."""
    args = {"q": "llama", **({"within_hours": window} if window else {})}
    sent = counts_statements(app, args)
    searched = [statement for statement in sent if "llama" in statement]
    grouped = [statement for statement in searched if "GROUP BY" in statement]
    index = {"sqlite": "_search", "postgresql": "_words", "mariadb": "_words"}[engine_kind]
    if window is None:
        assert not grouped and len(searched) >= 10
        # The stalled count reads the tasks running and unheard from, by updated_at.
        chips = [statement for statement in searched if "updated_at" not in statement]
        assert len(chips) >= 10
        assert all(index in statement for statement in chips)
        assert not any(" FROM training_task " in f"{statement} " for statement in chips)
    elif engine_kind == "postgresql":
        assert len(grouped) == 1 and len(searched) == 2
    else:
        assert not grouped and len(searched) >= 10


def test_a_search_s_chips_are_counted_chip_by_chip_where_no_index_gathers_it(app, engine_kind):
    """A week's `q=ai` is tested row by row on MariaDB (in its words tables) and SQLite,
    which a capped count stops at 10,001 and a grouped one would not: they count chip by
    chip, where PostgreSQL's trigram index gathers the matches."""
    args = {"q": "ai", "within_hours": "168"}
    sent = counts_statements(app, args)
    grouped = [statement for statement in sent if "GROUP BY" in statement]
    assert len(grouped) == (1 if engine_kind == "postgresql" else 0)


def test_a_search_s_exact_counts_are_grouped_where_its_matches_are_gathered(app, engine_kind):
    """`count=exact` of a search: one grouped statement on PostgreSQL; on SQLite and
    MariaDB one count per status and table, each a range of its (status, created_at)
    index (whose rows MariaDB tests in its words tables)."""
    args = {"q": "llama", "within_hours": "720", "count": "exact"}
    sent = counts_statements(app, args)
    grouped = [statement for statement in sent if "llama" in statement and "GROUP BY" in statement]
    assert len(grouped) == (1 if engine_kind == "postgresql" else 0)


def test_a_search_that_matches_something_is_not_everything(client, tasks):
    found = listed_ids(client, [("q", "llama")])
    assert 0 < len(found) < len(tasks)


def test_a_whole_id_lists_that_task_alone(client, tasks):
    task = tasks[17]
    for written in (str(task["id"]), task["id"].hex.upper()):
        assert listed_ids(client, [("q", written)]) == [str(task["id"])]


@pytest.mark.parametrize("length", [8, 9, 13, 20])
def test_the_first_characters_of_an_id_list_the_tasks_it_starts(client, tasks, length):
    prefix = str(tasks[42]["id"])[:length].rstrip("-")
    found = listed_ids(client, [("q", prefix)])
    assert str(tasks[42]["id"]) in found
    assert found == expected(tasks, search_filter(prefix))


def test_seven_characters_of_an_id_are_a_word(client, tasks):
    prefix = tasks[42]["id"].hex[:7]
    assert listed_ids(client, [("q", prefix)]) == expected(tasks, search_filter(prefix))


def test_an_export_holds_exactly_the_matches(client, tasks):
    response = client.get("/tasks.csv", query_string={"q": "llama"})
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["id"] for row in rows] == expected(tasks, search_filter("llama"))


BAD_SEARCHES = [
    "a" * 201,
    "!!! ,,, ...",
    '"unclosed phrase',
    "+cuda -memory",
    "cuda -memory",
    "NEAR(cuda memory)",
    "memory*",
    "^start",
    "cuda @3",
    "~cuda",
    "a\x00b",
    "tab\there",
]


@pytest.mark.parametrize("path", ["/tasks", "/tasks/counts", "/tasks.csv", "/tasks.ndjson"])
@pytest.mark.parametrize("q", BAD_SEARCHES)
def test_a_search_the_engines_would_misread_is_422_naming_q(client, path, q):
    response = client.get(path, query_string={"q": q})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert [error["parameter"] for error in response.get_json()["errors"]] == ["q"]


@pytest.mark.parametrize("q", BAD_SEARCHES[:4])
def test_the_page_says_what_is_wrong_with_a_search_beside_the_box(client, q):
    response = client.get("/", query_string={"q": q})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert re.search(r'id="q-errors"[^>]*>\s*<p class="field-error">', page)
    assert 'id="q"' in page and 'aria-invalid="true"' in page


def accepted(text: str) -> bool:
    """Whether the API reads `text` as a search."""
    try:
        parse_search(text)
    except SearchError:
        return False
    return True


@pytest.fixture(scope="module", params=["python", "json schema"])
def schema_reads_q(request):
    """The published pattern of `q` as Python reads it, and as the validator Schemathesis
    uses reads it, in JSON Schema's dialect of regular expressions."""
    if request.param == "python":
        return re.compile(valid_search_pattern()).fullmatch
    return jsonschema_rs.validator_for(search_schema(None)).is_valid


def test_the_schema_and_the_api_agree_on_every_character(schema_reads_q):
    every = (chr(point) for point in range(sys.maxunicode + 1) if not 0xD800 <= point < 0xE000)
    assert [text for text in every if accepted(text) != bool(schema_reads_q(text))] == []


def test_the_schema_and_the_api_agree_on_searches(schema_reads_q):
    ascii_letters = 'ab1 -"*()+~<>@{}^\t\x00_.,'
    letters = list(ascii_letters + "é日\xa0\u2028\u3000\ufeff\x85\u200b»½٣ीनش😀\U0001d7d8")

    @settings(max_examples=500, deadline=None)
    @given(st.text(alphabet=st.sampled_from(letters), max_size=12))
    def agree(text: str) -> None:
        assert accepted(text) == bool(schema_reads_q(text)), text

    agree()


def test_a_search_goes_back_into_links_as_it_came():
    given = MultiDict({"q": ' 3F2A9B1C "out of memory" cuda '})
    parsed = parse_filter(given, secret_key="k", strict=True).value
    again = parse_filter(MultiDict(parsed.to_args()), secret_key="k", strict=True).value
    assert again == parsed
    assert parsed.search.phrases == (("out", "of", "memory"), ("cuda",))
    assert parsed.search.ids[0].low.hex.startswith("3f2a9b1c")


# -- the page ----------------------------------------------------------------------------------


def test_a_whole_id_in_the_box_opens_the_task(client, tasks):
    task_id = tasks[5]["id"]
    response = client.get("/", query_string={"q": str(task_id), "status": "failed"})
    assert response.status_code == 303
    assert response.location.startswith(f"/task/{task_id}")
    assert "q=" not in response.location


def test_a_whole_id_typed_into_the_box_sends_htmx_to_the_task(client, tasks):
    task_id = tasks[5]["id"]
    headers = {"HX-Request": "true", "HX-Target": "results"}
    response = client.get("/", query_string={"q": str(task_id)}, headers=headers)
    assert response.headers["HX-Redirect"].startswith(f"/task/{task_id}")


def test_an_id_no_task_has_lists_nothing_and_says_so(client):
    response = client.get("/", query_string={"q": str(uuid.UUID(int=1))})
    assert response.status_code == 200
    assert "No task matches the search" in response.get_data(as_text=True)


def test_a_prefix_stays_on_the_list(client, tasks):
    response = client.get("/", query_string={"q": tasks[5]["id"].hex[:8]})
    assert response.status_code == 200
    assert f'id="task-{tasks[5]["id"]}"' in response.get_data(as_text=True)


def test_a_search_that_finds_nothing_says_so(client):
    page = client.get("/", query_string={"q": "zzzq"}).get_data(as_text=True)
    assert "No task matches the search “zzzq”" in page
    assert 'id="empty-clear-search"' in page


def test_searched_words_are_marked_and_the_message_stays_escaped(client):
    page = client.get("/", query_string={"q": "script", "status": "failed"}).get_data(as_text=True)
    assert "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt; &amp; more" in page
    assert "<script>alert" not in page


def test_a_searched_tag_is_marked_inside_its_escaped_html(client):
    page = client.get("/", query_string={"q": "bold"}).get_data(as_text=True)
    assert "&lt;b&gt;<mark>bold</mark>&lt;/b&gt;" in page


def test_marks_follow_case_and_unicode(client):
    page = client.get("/", query_string={"q": "LLAMA"}).get_data(as_text=True)
    assert "meta-<mark>llama</mark>/<mark>Llama</mark>-3.1-8B" in page


# -- rows the database keeps ----------------------------------------------------------------


def test_a_task_with_a_word_longer_than_any_search_is_written_and_found(
    scratch_app, scratch_engine
):
    """A B-tree key holds a few thousand bytes: the words tables of PostgreSQL and MariaDB
    leave out words no search can name (over 200 characters), and the task's row is written
    all the same."""
    task = make_task("training", "failed", NOW - timedelta(hours=1), rng=random.Random(4))
    rng = random.Random(5)
    blob = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8000))
    task["error_msg"] = f"payload {blob} rejected"
    insert_tasks(scratch_engine, [task])
    client = scratch_app.test_client()
    assert listed_ids(client, [("q", "payload rejected")]) == [str(task["id"])]
    assert counted(client, "rejected")["failed"] == {"value": 1, "relation": "eq"}


@pytest.mark.parametrize("gather_below", [1, 10**9], ids=["walked", "gathered"])
def test_a_phrase_needs_its_words_side_by_side(
    scratch_app, scratch_engine, monkeypatch, gather_below
):
    """Tasks that hold a phrase's words apart, or each pair of its neighbours but not all
    in a row, are not its matches, however the words tables lead to them."""
    monkeypatch.setattr(query_search, "GATHER_BELOW", gather_below)
    rng = random.Random(8)
    messages = [
        "support restarted, tickets lost",
        "support tickets lost",
        "lost support, support tickets",
    ]
    tasks = [
        make_task("training", "failed", NOW - timedelta(hours=hours), rng=rng)
        for hours in (1, 2, 3)
    ]
    for task, message in zip(tasks, messages, strict=True):
        task["error_msg"] = message
    insert_tasks(scratch_engine, tasks)
    client = scratch_app.test_client()
    for q, found in [
        ('"support tickets"', tasks[1:]),
        ('"support tickets lost"', tasks[1:2]),
        ('"lost support tickets"', []),
        ("support tickets", tasks),
    ]:
        assert listed_ids(client, [("q", q)]) == [str(task["id"]) for task in found], q
        assert counted(client, q)["failed"] == {"value": len(found), "relation": "eq"}, q


def test_a_long_phrase_or_many_words_ask_the_words_tables_for_a_few_terms(
    scratch_app, scratch_engine
):
    """A pasted error message is a phrase of many words, and a search may list many words:
    the words tables are asked for the first few terms and the rest is tested on the text,
    so that no statement carries dozens of steps into them (PostgreSQL took seconds to plan
    thirty). The same tasks are found."""
    words = [f"w{index}" for index in range(40)]
    task = make_task("training", "failed", NOW - timedelta(hours=1), rng=random.Random(9))
    task["error_msg"] = " ".join(words)
    other = make_task("training", "failed", NOW - timedelta(hours=2), rng=random.Random(10))
    other["error_msg"] = " ".join(reversed(words))
    insert_tasks(scratch_engine, [task, other])
    client = scratch_app.test_client()
    for q, found in [
        (f'"{" ".join(words)}"', [task]),
        (" ".join(words), [task, other]),
        (f'"{" ".join(words[:20])}" w39', [task]),
    ]:
        sent = counts_statements(scratch_app, {"q": q})  # first: the counts are then kept
        assert max(statement.count("_words") for statement in sent) <= len(MODEL_FOR_TYPE) * 6
        assert listed_ids(client, [("q", q)]) == [str(each["id"]) for each in found], q
        assert counted(client, q)["failed"] == {"value": len(found), "relation": "eq"}, q


# PostgreSQL's TRUNCATE skips row triggers; MariaDB refuses it on a table others refer to.
EMPTY_TRAINING = {"postgresql": "TRUNCATE training_task CASCADE"}


def test_a_task_whose_id_changes_or_whose_table_is_emptied_is_counted_as_it_is(
    scratch_app, scratch_engine
):
    """Plain SQL may change a task's id, or empty its table at once (TRUNCATE): the words
    the database keeps follow both."""
    task = make_task("training", "running", NOW - timedelta(hours=1), rng=random.Random(6))
    task["base_model"] = "renumbered-model"
    insert_tasks(scratch_engine, [task])
    client = scratch_app.test_client()
    new_id = uuid.uuid4()
    with scratch_engine.begin() as connection:
        where = TrainingTask.id == task["id"]
        connection.execute(sa.update(TrainingTask).where(where).values(id=new_id))
        where = TrainingTask.id == new_id
        finished = {"status": "completed", "finished_at": NOW, "progress": 1.0}
        connection.execute(sa.update(TrainingTask).where(where).values(**finished))
    counts = counted(client, "renumbered")
    assert counts["running"] == {"value": 0, "relation": "eq"}
    assert counts["completed"] == {"value": 1, "relation": "eq"}
    dialect = scratch_engine.dialect.name
    with scratch_engine.begin() as connection:
        connection.exec_driver_sql(EMPTY_TRAINING.get(dialect, "DELETE FROM training_task"))
    assert counted(client, "renumbered")["completed"] == {"value": 0, "relation": "eq"}


def counted(client, q: str) -> dict[str, Any]:
    """The capped counts by status of a search, from its index on every engine."""
    return client.get("/tasks/counts", query_string={"q": q}).get_json()["status"]


def test_rows_written_in_plain_sql_are_found_changed_and_gone(scratch_app, scratch_engine):
    """The database keeps each engine's index (SQLite's FTS5, the words tables of PostgreSQL
    and MariaDB) in step with rows a module inserts, changes and deletes in plain SQL."""
    task = make_task("training", "failed", NOW - timedelta(hours=1), rng=random.Random(3))
    insert_tasks(scratch_engine, [task])
    client = scratch_app.test_client()
    task_id = str(task["id"])
    assert listed_ids(client, [("q", "traceback")]) == [task_id]

    with scratch_engine.begin() as connection:
        where = TrainingTask.id == task["id"]
        connection.execute(
            sa.update(TrainingTask).where(where).values(error_msg="CUDA out of memory")
        )
    assert listed_ids(client, [("q", "traceback")]) == []
    assert listed_ids(client, [("q", '"out of memory"')]) == [task_id]
    assert counted(client, "traceback")["failed"] == {"value": 0, "relation": "eq"}
    assert counted(client, "cuda memory")["failed"] == {"value": 1, "relation": "eq"}

    with scratch_engine.begin() as connection:
        where = TrainingTask.id == task["id"]
        connection.execute(sa.update(TrainingTask).where(where).values(status="cancelled"))
    counts = counted(client, "memory")
    assert counts["cancelled"] == {"value": 1, "relation": "eq"}
    assert counts["failed"] == {"value": 0, "relation": "eq"}
    assert listed_ids(client, [("q", "memory"), ("status", "cancelled")]) == [task_id]

    with scratch_engine.begin() as connection:
        connection.execute(sa.delete(TrainingTask))
    assert listed_ids(client, [("q", "memory")]) == []
    assert counted(client, "memory")["cancelled"] == {"value": 0, "relation": "eq"}


# -- SQLite: a search's page read among each table's newest tasks first ------------------------

NEWEST_SEARCHES = ["llama", '"support tickets"', "script", "failed", "zzzq"]
NEWEST_FILTERS = [
    {},
    {"statuses": ("failed",)},
    {"tags": ("nightly",)},
    {"created_before": NOW - timedelta(days=20)},
    {"statuses": ("running", "completed"), "limit": 3},
    {"actor": "trainer"},
]


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("newest", [(3,), (7,), (25,), (3, 12)])
@pytest.mark.parametrize("fields", NEWEST_FILTERS, ids=lambda fields: repr(fields))
@pytest.mark.parametrize("q", NEWEST_SEARCHES)
def test_a_search_s_pages_read_among_the_newest_tasks_are_the_oracles(
    client, tasks, monkeypatch, newest, fields, q
):
    """Each table's `newest` newest tasks (a few, so that pages end past them), the known
    tasks written in no order of time and 25 of them created at one instant: every page is
    the oracle's, read among them where that is the page, and whole where it is not."""
    monkeypatch.setattr(pages, "HORIZON_ROWS", newest)
    task_filter = search_filter(q, **({"limit": 5} | fields))
    assert every_id(client, task_filter) == expected(tasks, task_filter)


def read_among_newest(app, task_filter: TaskFilter) -> tuple[list | None, list[str]]:
    """The filter's page as `page_among_newest` reads it (None where it is read whole), and
    the statements sent."""
    with app.app_context(), statements_run(app) as statements:
        connection = db.session.connection()
        looked_up = with_lookups(connection, task_filter)
        shape, values = page_shape_of(looked_up, NOW)
        return page_among_newest(connection, looked_up, shape, values), statements


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_common_word_s_first_page_is_read_among_the_newest_tasks(app, tasks, monkeypatch):
    """The first page of a word most tables hold, read among each table's 20 newest tasks:
    their rowids alone are asked of FTS5, and that is the page."""
    monkeypatch.setattr(pages, "HORIZON_ROWS", (20,))
    task_filter = search_filter("llama", limit=3)
    rows, statements = read_among_newest(app, task_filter)
    assert rows is not None
    assert [str(row.id) for row in rows] == expected(tasks, task_filter)[:4]  # one past the page
    assert any("rowid BETWEEN" in statement for statement in statements)


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_common_word_s_last_page_is_read_among_the_oldest_tasks(app, client, tasks, monkeypatch):
    """Below the last page's cursor each table holds fewer than 20 tasks: all of them are
    in its list, between their rowids, and that is the page though it is not full."""
    monkeypatch.setattr(pages, "HORIZON_ROWS", (20,))
    matching = expected(tasks, search_filter("llama"))
    response = client.get("/tasks", query_string={"q": "llama", "limit": len(matching) - 2})
    cursor = response.get_json()["next_cursor"]
    task_filter = replace(
        search_filter("llama", limit=10), cursor=read_cursor(cursor, "test-secret")
    )
    rows, statements = read_among_newest(app, task_filter)
    assert rows is not None
    assert [str(row.id) for row in rows] == matching[-2:]
    assert any("rowid BETWEEN" in statement for statement in statements)
