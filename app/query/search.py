"""Search in SQL: `q` as each engine's own index reads it.

The words are kept by the database (migrations/versions/0005_search.py): an FTS5 table per
task table on SQLite, a generated `search_text` column (` word word , word , … `) with a
trigram GIN index on PostgreSQL and a FULLTEXT index on MariaDB. A statement is built once
per shape (how many phrases and ids), and `WordsMatch` is written in each engine's words
when the statement is compiled; the words travel as bound parameters, never as SQL, and
they are letters and digits only (app/search.py), so no input reaches an engine's search
syntax.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from app.models import TaskModel
from app.search import Search

# MariaDB's FULLTEXT holds words of innodb_ft_min_token_size (3 by default) to
# innodb_ft_max_token_size characters; shorter or longer words are checked by LIKE alone.
FULLTEXT_WORD_LENGTHS = range(3, 85)
TEXT = sa.String()


class WordsMatch(sa.sql.functions.FunctionElement[bool]):
    """Every phrase of a search is in the task's words.

    Arguments: the table's id column, the FTS5 query, MariaDB's FULLTEXT query (or NULL
    when no word is long enough for its index) and one `LIKE` pattern per phrase.
    """

    # Not Boolean: SQLite would get `(…) = 1`, which hides the conditions from its planner.
    type = sa.types.NullType()
    name = "words_match"
    inherit_cache = True


def _table(element: WordsMatch) -> str:
    return element.clauses.clauses[0].table.name


@compiles(WordsMatch, "sqlite")
def _words_match_sqlite(element: WordsMatch, compiler: Any, **kw: Any) -> str:
    """The rows the FTS5 table finds, behind a test that any are found at all.

    The test names no table of the query, so SQLite runs it once before the loop and skips
    the walk of a table where nothing matches, which it would otherwise read to its end.
    """
    table = _table(element)
    search = f"{table}_search"
    matches = [
        f"SELECT {column} FROM {search} WHERE {search} MATCH "
        + compiler.process(element.clauses.clauses[1], **kw)
        for column in ("1", "rowid")
    ]
    return f"(EXISTS ({matches[0]}) AND +{table}.rowid IN ({matches[1]}))"


def _likes(element: WordsMatch, compiler: Any, **kw: Any) -> list[str]:
    table = _table(element)
    return [
        f"{table}.search_text LIKE {compiler.process(pattern, **kw)}"
        for pattern in element.clauses.clauses[3:]
    ]


@compiles(WordsMatch)
def _words_match_postgresql(element: WordsMatch, compiler: Any, **kw: Any) -> str:
    return "(" + " AND ".join(_likes(element, compiler, **kw)) + ")"


@compiles(WordsMatch, "mysql")
@compiles(WordsMatch, "mariadb")
def _words_match_mariadb(element: WordsMatch, compiler: Any, **kw: Any) -> str:
    conditions = _likes(element, compiler, **kw)
    against = element.clauses.clauses[2]
    if isinstance(against, sa.BindParameter):
        query = compiler.process(against, **kw)
        conditions.insert(
            0, f"MATCH ({_table(element)}.search_text) AGAINST ({query} IN BOOLEAN MODE)"
        )
    return "(" + " AND ".join(conditions) + ")"


def fulltext_words(search: Search) -> list[str]:
    """The words MariaDB's FULLTEXT index holds, each required (`+word`)."""
    return sorted(word for word in search.words if len(word) in FULLTEXT_WORD_LENGTHS)


def search_values(search: Search) -> dict[str, Any]:
    """The bound values of a search: patterns, engine queries and id ranges."""
    values: dict[str, Any] = {
        "search_match": " AND ".join(f'"{" ".join(phrase)}"' for phrase in search.phrases),
        "search_against": " ".join(f"+{word}" for word in fulltext_words(search)),
    }
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


def search_conditions(
    model: TaskModel, phrases: int, indexed: bool, ids: int
) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions of a search of `phrases` phrases and `ids` id ranges."""
    conditions: list[sa.ColumnElement[bool]] = []
    for index in range(ids):
        low = _search_value(f"id_low_{index}", model.id.type)
        high = _search_value(f"id_high_{index}", model.id.type)
        conditions.append(model.id.between(low, high))
    if phrases:
        against = _search_value("search_against") if indexed else sa.null()
        patterns = [_search_value(f"search_{index}") for index in range(phrases)]
        match = WordsMatch(model.id, _search_value("search_match"), against, *patterns)
        conditions.append(match)
    return conditions
