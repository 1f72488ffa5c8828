"""Search in SQL: `q` as each engine's own index reads it.

The words are kept by the database (migrations/versions/0005_search.py): an FTS5 table per
task table on SQLite, a generated `search_text` column (` word word , word , … `) with a
trigram GIN index on PostgreSQL. A statement is built once per shape (how many phrases and
ids), and `WordsMatch` is written in each engine's words when the statement is compiled;
the words travel as bound parameters, never as SQL, and they are letters and digits only
(app/search.py), so no input reaches an engine's search syntax.

On SQLite the index also holds each task's status (revision 0010), and a search is looked up
before the tables are read (`look_up_reach`): whether each table has a match at all. A table
without one is not read; a count of words, statuses and types alone is read from the index
alone (`index_count_members`). PostgreSQL and MariaDB keep a table of each task's words and
pairs of neighbouring words beside its status and created_at (revisions 0011 to 0016), from
which such a count is read too: alone for words and phrases of two words, and led to the few
rows whose text is tested for a longer phrase. On MariaDB, and on PostgreSQL for a page beside one
status few tasks have (`page_probes` in app/query/lookups.py), the words tables also find
the rows: each row a member walks is tested with one step into the key per term
(`probe_conditions`), and a table where the terms are rare hands its few matches over
instead (`look_up_words_reach`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from app.models import ACTIVE_STATUSES, MODEL_FOR_TYPE, Status, TaskModel, sql_constant
from app.query.engines import Executor, SearchIndex
from app.search import Search

if TYPE_CHECKING:
    from app.filters import TaskFilter
    from app.query.shapes import Shape

# The words tables (revisions 0011 to 0013) hold terms of at most 200 characters, as many as
# `q` holds; a longer term (lower case may lengthen a word: "İ" becomes two characters) is
# not looked for in them, and the search is read from the task tables.
WORDS_TABLE_LENGTHS = range(1, 201)
# Each term is one more step into the words tables in every count, and PostgreSQL takes
# seconds to plan a statement with thirty of them: the phrases past this many are tested on
# the text of the tasks the first ones find.
MOST_TERMS = 4
# On MariaDB, a table with fewer tasks than this holding a search's words hands them over to
# be sorted (`look_up_words_reach`); with more, walking created_at finds a page sooner.
GATHER_BELOW = 1_000
TEXT = sa.String()


class WordsMatch(sa.sql.functions.FunctionElement[bool]):
    """Every phrase of a search is in the task's words.

    Arguments: the table's id column, the FTS5 query, its status part (see
    `status_query`), the lowest and highest rowids of the tasks a page reads on SQLite
    (NULL for all, see app/query/horizons.py) and one `LIKE` pattern per phrase. MariaDB
    is given `probe_conditions` instead once its words are looked up; without the lookup
    it reads the `LIKE`s.
    """

    # Not Boolean: SQLite would get `(…) = 1`, which hides the conditions from its planner.
    type = sa.types.NullType()
    name = "words_match"
    inherit_cache = True


def _table(element: WordsMatch) -> str:
    return element.clauses.clauses[0].table.name


def _fts5_match(index: str, element: Any, compiler: Any, **kw: Any) -> str:
    """`index MATCH (status part || words)`: the element's second and third arguments."""
    words, status = (compiler.process(clause, **kw) for clause in element.clauses.clauses[1:3])
    return f"{index} MATCH ({status} || {words})"


@compiles(WordsMatch, "sqlite")
def _words_match_sqlite(element: WordsMatch, compiler: Any, **kw: Any) -> str:
    """The task is among the matches, listed once: a walk of created_at (or of a status's
    range) then tests each row against the list, whose cost follows the matches. Testing
    each row in the index instead costs about a hundred times more per row, and a walk may
    step over many rows before it finds a page of a word that is rare among recent tasks.
    A member of statuses that few tasks have names them in the query, so that the list
    holds only the tasks the walk can reach (see `narrowing_statuses`), and a page that
    reads only the newest tasks lists only theirs: FTS5 reads its lists from one rowid to
    another.
    """
    table = _table(element)
    search = f"{table}_search"
    match = _fts5_match(search, element, compiler, **kw)
    floor, ceiling = element.clauses.clauses[3:5]
    if not isinstance(floor, sa.sql.elements.Null):
        rowids = f"{compiler.process(floor, **kw)} AND {compiler.process(ceiling, **kw)}"
        match += f" AND rowid BETWEEN {rowids}"
    return f"+{table}.rowid IN (SELECT rowid FROM {search} WHERE {match})"


def _likes(element: WordsMatch, compiler: Any, **kw: Any) -> list[str]:
    table = _table(element)
    return [
        compiler.process(text_like(table, pattern), **kw) for pattern in element.clauses.clauses[5:]
    ]


@compiles(WordsMatch)
def _words_match_others(element: WordsMatch, compiler: Any, **kw: Any) -> str:
    return "(" + " AND ".join(_likes(element, compiler, **kw)) + ")"


class IndexMatch(sa.sql.functions.FunctionElement[bool]):
    """A table's FTS5 index matches the search, with the status part of `status_query`.

    Arguments: the index's rowid, the FTS5 query, its status part. SQLite only:
    `index_count_members` reads the index without the task table.
    """

    type = sa.types.NullType()
    name = "index_match"
    inherit_cache = True


@compiles(IndexMatch, "sqlite")
def _index_match_sqlite(element: IndexMatch, compiler: Any, **kw: Any) -> str:
    return _fts5_match(_table(element), element, compiler, **kw)


def status_query(statuses: tuple[str, ...]) -> sa.ColumnElement[str]:
    """The start of an FTS5 query that keeps the tasks of these statuses (all when none)."""
    if not statuses:
        return sql_constant("")
    return sql_constant(f"status : ({' OR '.join(statuses)}) AND ")


def narrowing_statuses(statuses: tuple[str, ...]) -> tuple[str, ...]:
    """The statuses a member's list of matches is narrowed to, if any.

    Named in the index's query, statuses make FTS5 step through their tasks beside the
    words' matches. Statuses that few tasks have shorten the list a walk tests rows
    against: `llama` among failed tasks lists 3,213 rows of a table instead of 33,138, and
    among queued and running ones (the active half of a time window) fewer still. Completed
    tasks are most of a table, and so are the finished ones together: stepping through them
    costs more than it saves (a week's page of a common word took twice as long with its
    three finished statuses named).
    """
    if statuses and set(statuses) <= {status.value for status in ACTIVE_STATUSES}:
        return statuses
    if len(statuses) == 1 and statuses[0] != Status.COMPLETED.value:
        return statuses
    return ()


def fts_words(search: Search) -> str:
    """The FTS5 query of the search's phrases, in the text columns only (not the status)."""
    phrases = " AND ".join(f'"{" ".join(phrase)}"' for phrase in search.phrases)
    return f"- {{status}} : ({phrases})"


def search_terms(search: Search) -> tuple[str, ...]:
    """What the words tables are asked for (revisions 0011 to 0013): of each of the first
    MOST_TERMS phrases its word, or its first pair of neighbouring words (`w1 w2`), else
    none when one is longer than the tables hold. The other phrases, and those of three
    words or more, are tested on the text of the tasks found (`unpaired_phrases`)."""
    terms = {" ".join(phrase[:2]) for phrase in search.phrases[:MOST_TERMS]}
    if any(len(term) not in WORDS_TABLE_LENGTHS for term in terms):
        return ()
    return tuple(sorted(terms))


def unpaired_phrases(search: Search) -> tuple[int, ...]:
    """The positions of the phrases the terms do not prove, whose text is tested besides:
    those of three words or more, and those past the first MOST_TERMS."""
    return tuple(
        index
        for index, phrase in enumerate(search.phrases)
        if len(phrase) > 2 or index >= MOST_TERMS
    )


def search_values(search: Search) -> dict[str, Any]:
    """The bound values of a search: patterns, engine queries and id ranges."""
    values: dict[str, Any] = {}
    if search.phrases:
        values["search_match"] = fts_words(search)
    for index, term in enumerate(search_terms(search)):
        values[f"search_word_{index}"] = term
    for index, phrase in enumerate(search.phrases):
        values[f"search_{index}"] = f"% {' '.join(phrase)} %"
    for index, ids in enumerate(search.ids):
        values[f"id_low_{index}"], values[f"id_high_{index}"] = ids.low, ids.high
    return values


def _search_value(name: str, type_: Any = TEXT) -> sa.BindParameter[Any]:
    """A search value written into the statement when it runs, not sent apart.

    PostgreSQL plans the app's statements once for any values (plan_cache_mode), and for a
    `LIKE` or an id range it cannot see, it walks created_at through every task of a table
    where no task matches. Written out, each search is planned for its own words: a rare
    word reads the trigram index, a common one walks created_at. The values are letters,
    digits, spaces and the code's own `%` and `"` (app/search.py), quoted by SQLAlchemy.
    """
    return sa.bindparam(name, type_=type_, literal_execute=True)


def search_conditions(model: TaskModel, shape: Shape) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions of a member's search: its id ranges and phrases."""
    if model.task_type in shape.search_absent:
        return [sa.false()]
    conditions: list[sa.ColumnElement[bool]] = []
    for index in range(shape.search_ids):
        low = _search_value(f"id_low_{index}", model.id.type)
        high = _search_value(f"id_high_{index}", model.id.type)
        conditions.append(model.id.between(low, high))
    if shape.search_running:
        conditions += running_matches(model, shape)
    elif shape.search_probed:  # looked up only for a search the words tables hold
        conditions += probe_conditions(model, shape)
    elif shape.search_phrases:
        patterns = [_search_value(f"search_{index}") for index in range(shape.search_phrases)]
        words = _search_value("search_match")
        status = status_query(narrowing_statuses(shape.statuses))
        rowids: list[sa.ColumnElement[Any]] = [sa.null(), sa.null()]
        if model.task_type in shape.search_horizon:
            rowids = [
                sa.bindparam(f"{end}_{model.task_type}", type_=sa.Integer())
                for end in ("floor", "ceiling")
            ]
            horizon = sa.bindparam(f"horizon_{model.task_type}", type_=model.created_at.type)
            conditions.append(model.created_at >= horizon)
        conditions.append(WordsMatch(model.id, words, status, *rowids, *patterns))
    return conditions


def words_table(model: TaskModel) -> sa.TableClause:
    """A task table's table of words and pairs (revisions 0011 to 0013), each beside its
    task's status, created_at and id, the key in that order (revision 0016)."""
    return sa.table(
        f"{model.__tablename__}_words",
        sa.column("word"),
        sa.column("status"),
        sa.column("created_at", model.created_at.type),
        sa.column("id"),
    )


def probe_conditions(model: TaskModel, shape: Shape) -> list[sa.ColumnElement[bool]]:
    """A member's search on MariaDB (and on PostgreSQL for a page beside a rare status), in
    its words tables: each term (a word, or a pair of neighbouring words of a phrase, see
    `search_terms`) is one step into the row's part of the (word, status, created_at, id)
    key, and each phrase of three words or more is its `LIKE` besides.

    A scalar subquery, which MariaDB runs for each row the member walks: as EXISTS or IN it
    would turn it into a join that gathers every match of a common word and sorts them (a
    third of a second for `llama` in one table where the walk takes a few milliseconds). A
    table with few matches (`search_gathered`) gathers them instead, by IN, since the walk
    would step over most of the table to find them.
    """
    words = words_table(model)
    conditions: list[sa.ColumnElement[bool]] = []
    if model.task_type in shape.search_gathered:
        first = sa.select(words.c.id).where(words.c.word == _search_value("search_word_0"))
        conditions.append(model.id.in_(first))
    for index in range(shape.search_words):
        probe = sa.select(sql_constant(1)).where(
            words.c.word == _search_value(f"search_word_{index}"),
            words.c.status == model.status,
            words.c.created_at == model.created_at,
            words.c.id == model.id,
        )
        conditions.append(probe.scalar_subquery().is_not(None))
    return conditions + phrase_likes(model, shape.search_unpaired)


def running_matches(model: TaskModel, shape: Shape) -> list[sa.ColumnElement[bool]]:
    """A stalled count's search on PostgreSQL and MariaDB: the table's running tasks that
    hold every term, handed over by the words tables (a range of the (word, status,
    created_at, id) key a term), each then read by id to test when it was last heard from
    (and the text of a longer phrase).

    A stalled task is a running one, so these are all the candidates. Walked from the
    (status, updated_at) index instead, every stalled task of the table is read and its
    text tested, however few hold the words: on PostgreSQL, 31 of the 57 ms the counts of
    `q="support tickets"` took at a million tasks, 154 of 171 ms at ten million.
    """
    matches = words_matches(model, shape.search_words)
    running = matches.first.c.status == sql_constant(Status.RUNNING.value)
    ids = sa.select(matches.first.c.id).select_from(matches.source).where(*matches.conditions)
    return [model.id.in_(ids.where(running)), *phrase_likes(model, shape.search_unpaired)]


def phrase_likes(model: TaskModel, unpaired: tuple[int, ...]) -> list[sa.ColumnElement[bool]]:
    """The `LIKE` of each phrase given by its position in the search."""
    table = model.__tablename__
    return [text_like(table, _search_value(f"search_{index}")) for index in unpaired]


def text_like(table: str, pattern: Any) -> sa.ColumnElement[bool]:
    """`<table>.search_text LIKE pattern`: the column revision 0005 adds beside the models."""
    return sa.literal_column(f"{table}.search_text", TEXT).like(pattern)


# -- what SQLite and MariaDB learn of a search before they read the tables ----------------


@dataclass(frozen=True)
class SearchReach:
    """The tables where no task has a search's words, and on MariaDB those where few do.

    `probed`: the members test each row in the words tables (`probe_conditions`); with
    `pages_only`, only a page's members, which stop at a page, where a count, a chart or the
    top errors read every match and are quicker with the index that gathers them.
    """

    text: str
    absent: tuple[str, ...]
    gathered: tuple[str, ...] = ()
    probed: bool = False
    pages_only: bool = False


def search_reach(task_filter: TaskFilter) -> SearchReach | None:
    """The reach the filter carries for its own search; None before the lookup (or for
    another search, which a changed filter may still carry)."""
    reach, search = task_filter.search_reach, task_filter.search
    if reach is None or search is None or not search.phrases or reach.text != search.text:
        return None
    return reach


def look_up_reach(executor: Executor, search: Search) -> SearchReach:
    """Whether each table has a match at all: one step into its index."""
    values = {"search_match": fts_words(search)}
    absent = []
    for task_type, model in MODEL_FOR_TYPE.items():
        (member,) = index_count_members(model, (), sql_constant(1))
        member = member.limit(sql_constant(1))
        if executor.execute(member, values).first() is None:
            absent.append(task_type)
    return SearchReach(search.text, tuple(absent))


def look_up_words_reach(executor: Executor, search: Search) -> SearchReach | None:
    """How many tasks of each table hold every term of a search in MariaDB's words tables
    (and its phrases of three words or more, in their rows), counted up to GATHER_BELOW: none
    (the table is not read), few (gathered), or many (walked, each row probed). One
    statement for the five tables. None when the words tables do not hold the words."""
    terms = search_terms(search)
    if not terms:
        return None
    template = reach_template(len(terms), unpaired_phrases(search), GATHER_BELOW)
    found = executor.execute(template, search_values(search))
    absent, gathered = [], []
    for task_type, tasks in zip(MODEL_FOR_TYPE, found.one(), strict=True):
        if tasks == 0:
            absent.append(task_type)
        elif tasks < GATHER_BELOW:
            gathered.append(task_type)
    return SearchReach(search.text, tuple(absent), tuple(gathered), probed=True)


@functools.lru_cache(maxsize=64)
def reach_template(terms: int, unpaired: tuple[int, ...], up_to: int) -> sa.Select[Any]:
    """Each table's count of the tasks holding the terms, up to `up_to`, in one row."""
    counts = []
    for model in MODEL_FOR_TYPE.values():
        member = words_count_member(model, (), sql_constant(1), terms, unpaired)
        limited = member.limit(sql_constant(up_to)).subquery("found")
        counts.append(sa.select(sa.func.count()).select_from(limited).scalar_subquery())
    return sa.select(*counts)


@functools.cache
def fts5_table(model: TaskModel) -> sa.TableClause:
    """A task table's FTS5 index on SQLite (revision 0010), one object per table, so that
    a column of it written apart from `index_count_members` refers to the same table."""
    return sa.table(f"{model.__tablename__}_search", sa.column("rowid", sa.Integer()))


def index_count_members(
    model: TaskModel,
    statuses: tuple[str, ...],
    column: sa.ColumnElement[Any],
    index: SearchIndex = "fts5",
    words: int = 0,
    unpaired: tuple[int, ...] = (),
) -> list[sa.Select[Any]]:
    """`column` over the tasks of a table whose words match the search, read from the index
    alone: one member per status, or one for every status. In SQLite's FTS5 index (an OR of
    statuses steps through each status's every task), or in the words table of PostgreSQL or
    MariaDB (its first `words` terms, see `words_count_member`).
    """
    each = [(status,) for status in statuses] or [()]
    if index == "words":
        return [words_count_member(model, part, column, words, unpaired) for part in each]
    table = fts5_table(model)
    match = _search_value("search_match")
    return [
        sa.select(column)
        .select_from(table)
        .where(IndexMatch(table.c.rowid, match, status_query(part)))
        for part in each
    ]


@dataclass(frozen=True)
class WordsMatches:
    """A table's tasks that hold every term, in its words table: the first term's entries
    (`first`, one per task), what to read them from, and the conditions."""

    first: sa.Alias
    source: sa.FromClause
    conditions: list[sa.ColumnElement[bool]]


def words_matches(model: TaskModel, words: int, unpaired: tuple[int, ...] = ()) -> WordsMatches:
    """A range of the (word, status, created_at, id) key for the first term, and a step
    into the key for each other term of each task found. Phrases of three words or more
    (`unpaired`) are then tested on the rows of those tasks alone."""
    table = words_table(model)
    first = table.alias("word_0")
    conditions = [first.c.word == _search_value("search_word_0")]
    for index in range(1, words):
        other = table.alias(f"word_{index}")
        conditions.append(
            sa.exists().where(
                other.c.word == _search_value(f"search_word_{index}"),
                other.c.status == first.c.status,
                other.c.created_at == first.c.created_at,
                other.c.id == first.c.id,
            )
        )
    source: sa.FromClause = first
    if unpaired:
        source = first.join(model, model.id == first.c.id)
        conditions += phrase_likes(model, unpaired)
    return WordsMatches(first, source, conditions)


def words_count_member(
    model: TaskModel,
    statuses: tuple[str, ...],
    column: sa.ColumnElement[Any],
    words: int,
    unpaired: tuple[int, ...] = (),
) -> sa.Select[Any]:
    """`column` over a table's tasks that hold every term (`search_terms`), of the one status
    given (or any), from its words table (`words_matches`)."""
    matches = words_matches(model, words, unpaired)
    conditions = list(matches.conditions)
    if statuses:
        conditions.append(matches.first.c.status == sql_constant(statuses[0]))
    return sa.select(column).select_from(matches.source).where(*conditions)


def counted_from_index(shape: Shape, index: SearchIndex) -> bool:
    """Whether a count of `shape` is the search index's alone: words with types and statuses
    only. The words tables count phrases of two words as one pair of neighbours, and lead
    those of more by their pairs to the few rows whose text is tested (`search_unpaired`).

    Anything else (ids, tags, time, stalled, an actor, an error group) needs the task rows.
    """
    if index is None or (index == "words" and not shape.search_words):
        return False
    per_task = shape.tags or shape.error_group or shape.window or shape.after or shape.before
    others = per_task or shape.cursor or shape.stalled or shape.actor or shape.search_ids
    return bool(shape.search_phrases) and not others
