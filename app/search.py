"""What `q` means: a task id or its first characters, and words or "quoted phrases".

`parse_search` turns the text of `q` into a `Search` value, or raises `SearchError` with the
message the API and the page show. Nothing the user types reaches an engine's own search
syntax: a search is made of words, each a run of letters and digits taken in lower case, as
every engine (app/query/search.py) and the highlighting below read them. The engines' own
ideas of a letter and of lower case differ from Python's at the edges (MariaDB lowers "İ",
"ẞ" and a final "Σ" otherwise; PostgreSQL's `[:alnum:]` leaves out "½"), and a search with
such a word finds nothing there. A term of 8 to 32 hexadecimal digits (with a UUID's dashes
or without) is an id or the start of one.
"""

from __future__ import annotations

import re
import sys
import uuid
from dataclasses import dataclass
from functools import cache

from markupsafe import Markup, escape

MAX_SEARCH_LENGTH = 200
ID_PREFIX_MIN = 8
# A run of letters and digits: Python's \w less the underscore. SQLite's unicode61
# tokenizer, PostgreSQL's [:alnum:] (ICU) and MariaDB's \p{L}\p{N} split text the same way.
WORD = re.compile(r"[^\W_]+")
TERM = re.compile(r'"([^"]*)"|([^\s"]+)')
HEX_TERM = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]*")
UUID_LAYOUT = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
CONTROLS = r"\x00-\x1f\x7f-\x9f"
# The characters Python's \s matches that are not control characters, as a class's contents:
# what TERM splits on once control characters are refused.
SPACES = " \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The engines' search operators (FTS5's * ^ ( ) + and { }, MariaDB's + ~ < > ( ) * @),
# refused rather than read as words, and a term that starts with "-" (a NOT in both).
OPERATORS = "*^()+~<>@{}"
OPERATOR_CHARACTER = re.compile(f"[{CONTROLS}{re.escape(OPERATORS)}]")
NEGATED_TERM = re.compile(r'(?:^|[\s"])-')


def valid_search_pattern() -> str:
    """The regular expression a valid `q` matches in full, for the API's schema.

    Quotes come in pairs, a "-" follows a character of a term (not a space, a quote or the
    start), no operator or control character appears, and a letter or digit does: outside
    quotes, or inside a pair of them. Python and JSON Schema's dialect (ECMA-262, compiled
    with the `u` flag as validators such as ajv do: the class holds characters past U+FFFF)
    read it alike because it names every character itself: `\\w` and `\\s` mean other characters in
    each, and tools that read `\\p{L}` in Python put a few scripts' letters in its place.
    """
    operators = re.sub(r"[\\\]^-]", r"\\\g<0>", OPERATORS)  # only what a class must escape
    other = f'[^{SPACES}"\\-{CONTROLS}{operators}]'
    run = f"(?:[{SPACES}]|{other}-*)*"
    pair = f'"{run}"{run}'
    word = f"[{letters_and_digits()}]-*{run}"
    return f'^{run}(?:{pair})*(?:{word}(?:{pair})*|"{run}{word}"{run}(?:{pair})*)$'


@cache
def letters_and_digits() -> str:
    """Every letter and digit WORD takes (Unicode's L and N, in this Python's version of it),
    as the ranges of a character class."""
    ranges: list[str] = []
    start = None
    for point in range(sys.maxunicode + 2):
        inside = point <= sys.maxunicode and chr(point).isalnum()
        if inside and start is None:
            start = point
        elif not inside and start is not None:
            last = point - 1
            ranges.append(chr(start) if start == last else f"{chr(start)}-{chr(last)}")
            start = None
    return "".join(ranges)


class SearchError(ValueError):
    """Text that `q` cannot mean; the message says what to change."""


@dataclass(frozen=True)
class IdRange:
    """Ids from `low` to `high`, both included: one id, or every id with a given start."""

    low: uuid.UUID
    high: uuid.UUID

    @classmethod
    def of_prefix(cls, hex_digits: str) -> IdRange:
        """Every id whose hex digits start with `hex_digits` (all 32 of them: one id)."""
        rest = 32 - len(hex_digits)
        return cls(uuid.UUID(hex_digits + "0" * rest), uuid.UUID(hex_digits + "f" * rest))

    @property
    def whole_id(self) -> uuid.UUID | None:
        """The one id this range holds, when it was a whole id."""
        return self.low if self.low == self.high else None


@dataclass(frozen=True)
class Search:
    """A parsed `q`: id ranges and phrases, all of which must match.

    A phrase is a tuple of words that must follow each other in one field (a single word
    is a phrase of one).
    """

    text: str
    ids: tuple[IdRange, ...] = ()
    phrases: tuple[tuple[str, ...], ...] = ()

    @property
    def words(self) -> frozenset[str]:
        """Every word of every phrase, for marking matches."""
        return frozenset(word for phrase in self.phrases for word in phrase)

    @property
    def whole_id(self) -> uuid.UUID | None:
        """The task id `q` names, when it is one whole id and nothing else."""
        if len(self.ids) == 1 and not self.phrases:
            return self.ids[0].whole_id
        return None


def words_of(text: str) -> list[str]:
    """The words of a text as search reads them: runs of letters and digits, lower case."""
    return [word.lower() for word in WORD.findall(text)]


def id_hex(term: str) -> str | None:
    """The hex digits of a term that is an id or an id's start (8 to 32 digits), else None."""
    if not HEX_TERM.fullmatch(term):
        return None
    digits = term.replace("-", "").lower()
    if not ID_PREFIX_MIN <= len(digits) <= 32:
        return None
    if "-" in term and not _dashes_where_a_uuid_has_them(term):
        return None
    return digits


def _dashes_where_a_uuid_has_them(term: str) -> bool:
    """Whether a dashed term is the start of a UUID written in its usual 8-4-4-4-12 form."""
    return len(term) <= len(UUID_LAYOUT) and all(
        (char == "-") == (layout == "-") for char, layout in zip(term, UUID_LAYOUT, strict=False)
    )


def parse_search(text: str) -> Search:
    """Read the text of `q`; raise SearchError with the reason when it cannot be searched."""
    if len(text) > MAX_SEARCH_LENGTH:
        raise SearchError(f"at most {MAX_SEARCH_LENGTH} characters")
    if found := OPERATOR_CHARACTER.search(text):
        shown = repr(found.group()) if found.group().isprintable() else "a control character"
        raise SearchError(
            f'{shown} is not searched: q takes words, "quoted phrases" and task ids, '
            f"without operators ({' '.join(OPERATORS)}) or control characters"
        )
    if NEGATED_TERM.search(text):
        raise SearchError('a word cannot start with "-": every word must match, none excluded')
    if text.count('"') % 2:
        raise SearchError('a quote is not closed: put phrases between two " marks')
    ids: list[IdRange] = []
    phrases: list[tuple[str, ...]] = []
    for quoted, bare in TERM.findall(text):
        if bare and (digits := id_hex(bare)):
            ids.append(IdRange.of_prefix(digits))
        elif words := tuple(words_of(quoted or bare)):
            phrases.append(words)
    if not ids and not phrases:
        raise SearchError('give a word, a "phrase" or at least 8 characters of a task id')
    return Search(
        text=text.strip(), ids=tuple(dict.fromkeys(ids)), phrases=tuple(dict.fromkeys(phrases))
    )


def mark_words(text: str | None, words: frozenset[str]) -> Markup:
    """`text`, escaped, with each searched word inside <mark>."""
    if not text:
        return Markup("") if text is None else escape(text)
    if not words:
        return escape(text)
    parts: list[str] = []
    last = 0
    for found in WORD.finditer(text):
        if found.group().lower() in words:
            parts.append(escape(text[last : found.start()]))
            parts.append(Markup("<mark>%s</mark>") % found.group())
            last = found.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)
