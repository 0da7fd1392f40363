"""The query language of `items list --where`, `items export --where` and the API's `where=`,
compiled to an SQL condition on the `items` table.

    user.camera = cam_01 and (system.width >= 1000 or user.tags contains cat)
    not user.reviewed exists
    filename glob "/cats/*.jpg"  and  mimetype in (image/jpeg, image/png)
    name like "%cat%"  and  folder = /2024  and  state != missing

- Fields: `user.KEY.SUB...` and `system.KEY...` (also spelled `metadata.user...`), the item's
  `filename`, `name`, `dir`, `type`, `state`, `createdAt`, `updatedAt`, and the shortcuts
  `mimetype`, `size`, `width`, `height` (of `system`). `folder = /a` holds for every item under
  `/a`, at any depth (a range of the filename index, so it is fast at millions of items).
- Comparisons: `=`, `!=`, `<`, `<=`, `>`, `>=`, `in (v, ...)`, `contains v` (an element of a
  list, or a substring of a string), `exists`, `glob PATTERN` (`*`, `?`, `[abc]`; case
  sensitive), `like PATTERN` (`%`, `_`; case-insensitive). `and`, `or`, `not`, parentheses;
  `and` binds tighter than `or`. Keywords are case-insensitive.
- Values keep their JSON types: `42` is a number, `true`/`false`/`null`, `"42"` or `'42'` the
  string, `["a", "b"]` a list; any other word (`cam_01`, `image/jpeg`) is a string. A number
  never equals a string: `user.lot = 42` does not match `"42"`. `!=` also holds where the
  field is missing.

Errors are `QueryError`s naming the position (1-based character) in the query.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

KEYWORDS = {"and", "or", "not", "in", "contains", "exists", "glob", "like"}
OPERATORS = ("!=", "<=", ">=", "=", "<", ">")
_WORD = re.compile(r"""[^\s()=!<>,"'\[\]{}]+""")
_SPACE = re.compile(r"\s*")
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")
# The name and folder of `filename` ('/a/b.jpg'): rtrim strips the name off the end.
_DIR_SLASH = "rtrim(filename, replace(filename, '/', ''))"
NAME_SQL = f"substr(filename, length({_DIR_SLASH}) + 1)"
DIR_SQL = f"CASE WHEN length({_DIR_SLASH}) = 1 THEN '/' ELSE rtrim({_DIR_SLASH}, '/') END"
COLUMNS = {  # item fields kept in columns, and their SQL
    "filename": "filename", "name": NAME_SQL, "dir": DIR_SQL, "type": "type", "state": "state",
    "createdAt": "created_at", "updatedAt": "updated_at",
    "system.size": "size", "system.etag": "etag", "system.md5": "md5",
    "system.originalname": NAME_SQL,
}
SHORTCUTS = {"mimetype": "system.mimetype", "size": "system.size", "width": "system.width",
             "height": "system.height", "metadata.user": "user", "metadata.system": "system"}


class QueryError(InputError):
    """A query that does not parse or compile; the message names the position."""


@dataclass(frozen=True)
class Token:
    kind: str  # word | string | value | op | ( | ) | , | end
    text: str
    value: Any
    pos: int  # 0-based offset in the query


def _tokens(query: str) -> list[Token]:
    tokens, pos = [], 0
    decoder = json.JSONDecoder()
    while True:
        pos = _SPACE.match(query, pos).end()
        if pos >= len(query):
            tokens.append(Token("end", "", None, pos))
            return tokens
        char = query[pos]
        if char in "(),":
            tokens.append(Token(char, char, None, pos))
            pos += 1
        elif query.startswith(OPERATORS, pos):
            op = next(o for o in OPERATORS if query.startswith(o, pos))
            tokens.append(Token("op", op, None, pos))
            pos += len(op)
        elif char in "\"[{":
            try:
                value, end = decoder.raw_decode(query, pos)
            except ValueError as error:
                raise QueryError(_at(query, pos, f"not valid JSON ({getattr(error, 'msg', error)})")) from None
            tokens.append(Token("string" if char == '"' else "value", query[pos:end], value, pos))
            pos = end
        elif char == "'":
            end = query.find("'", pos + 1)
            if end < 0:
                raise QueryError(_at(query, pos, "unterminated string"))
            tokens.append(Token("string", query[pos:end + 1], query[pos + 1:end], pos))
            pos = end + 1
        else:
            match = _WORD.match(query, pos)
            if not match:
                raise QueryError(_at(query, pos, f"unexpected {char!r}"))
            tokens.append(Token("word", match.group(), match.group(), pos))
            pos = match.end()


def _at(query: str, pos: int, message: str) -> str:
    where = "end of query" if pos >= len(query) else repr(query[pos:pos + 12])
    return f"query {query!r}: {message} at position {pos + 1} ({where})"


def _word_value(text: str) -> Any:
    if text in ("true", "false", "null") or _NUMBER.match(text):
        return json.loads(text)
    return text


# -- the tree -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compare:
    field: str
    op: str  # = != < <= > >= in contains exists glob like
    value: Any
    pos: int


@dataclass(frozen=True)
class Bool:
    op: str  # and | or | not
    parts: tuple


class _Parser:
    def __init__(self, query: str):
        self.query = query
        self.tokens = _tokens(query)
        self.i = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def keyword(self, *names: str) -> bool:
        token = self.token
        return token.kind == "word" and token.text.lower() in names

    def fail(self, message: str, token: Token | None = None):
        raise QueryError(_at(self.query, (token or self.token).pos, message))

    def parse(self):
        if self.token.kind == "end":
            self.fail("empty query")
        tree = self.disjunction()
        if self.token.kind != "end":
            self.fail("expected and, or, or the end")
        return tree

    def disjunction(self):
        parts = [self.conjunction()]
        while self.keyword("or"):
            self.i += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Bool("or", tuple(parts))

    def conjunction(self):
        parts = [self.negation()]
        while self.keyword("and"):
            self.i += 1
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Bool("and", tuple(parts))

    def negation(self):
        if self.keyword("not"):
            self.i += 1
            return Bool("not", (self.negation(),))
        if self.token.kind == "(":
            self.i += 1
            inner = self.disjunction()
            if self.token.kind != ")":
                self.fail("expected ')'")
            self.i += 1
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        token = self.token
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            self.fail("expected a field (user.KEY, system.KEY, filename, ...)")
        field = resolve_field(token.text, self.query, token.pos)
        self.i += 1
        op_token = self.token
        if op_token.kind == "op":
            self.i += 1
            return Compare(field, op_token.text, self.value(), token.pos)
        if self.keyword("exists"):
            self.i += 1
            return Compare(field, "exists", None, token.pos)
        if self.keyword("not") and self.tokens[self.i + 1].kind == "word" \
                and self.tokens[self.i + 1].text.lower() == "exists":
            self.i += 2
            return Bool("not", (Compare(field, "exists", None, token.pos),))  # type: ignore[return-value]
        if self.keyword("contains", "glob", "like"):
            op = op_token.text.lower()
            self.i += 1
            value = self.value()
            if op in ("glob", "like") and not isinstance(value, str):
                self.fail(f"{op} takes a text pattern", op_token)
            return Compare(field, op, value, token.pos)
        if self.keyword("in"):
            self.i += 1
            if self.token.kind != "(":
                self.fail("expected '(' after in")
            self.i += 1
            values = [self.value()]
            while self.token.kind == ",":
                self.i += 1
                values.append(self.value())
            if self.token.kind != ")":
                self.fail("expected ',' or ')'")
            self.i += 1
            return Compare(field, "in", tuple(values), token.pos)
        self.fail("expected =, !=, <, <=, >, >=, in, contains, exists, glob or like")

    def value(self) -> Any:
        token = self.token
        if token.kind in ("string", "value"):
            self.i += 1
            return token.value
        if token.kind == "word":
            self.i += 1
            return _word_value(token.text)
        self.fail("expected a value")


def resolve_field(text: str, query: str = "", pos: int = 0) -> str:
    """The field's canonical name ('user.camera', 'system.exif.Make', 'filename', ...)."""
    for short, full in SHORTCUTS.items():
        if text == short or text.startswith(short + "."):
            text = full + text[len(short):]
            break
    root, _, rest = text.partition(".")
    if text in COLUMNS or text == "folder":
        return text
    if root in ("user", "system") and rest and all(part for part in rest.split(".")):
        return text
    raise QueryError(_at(query or text, pos, f"unknown field {text!r} (use user.KEY, system.KEY, "
                                             f"folder, {', '.join(c for c in COLUMNS if '.' not in c)}, "
                                             f"mimetype, size, width or height)"))


def parse(query: str):
    return _Parser(query).parse()


# -- SQL ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """Parsed queries, all of which must hold; `sql(dialect)` is the SQL condition on
    `items` and its arguments, for the catalogue's engine (syncd.catalogue.backend)."""

    trees: tuple

    def sql(self, dialect=None) -> tuple[str, tuple]:
        dialect = dialect or _sqlite()
        parts, args = [], []
        for tree in self.trees:
            sql, extra = _sql(tree, dialect)
            parts.append(f"({sql})")
            args.extend(extra)
        return " AND ".join(parts), tuple(args)


def compile_query(queries: str | list[str] | tuple[str, ...]) -> Condition | None:
    """The condition holding when every query holds; None for no query. Raises QueryError."""
    if isinstance(queries, str):
        queries = [queries]
    trees = tuple(parse(query) for query in queries)
    return Condition(trees) if trees else None


def condition_sql(where, dialect) -> tuple[str, tuple]:
    """`where` (a Condition, or SQL and its arguments) as an extra `AND (...)` and arguments."""
    if not where:
        return "", ()
    sql, args = where.sql(dialect) if isinstance(where, Condition) else (where[0], tuple(where[1]))
    return f"AND ({sql})", tuple(args)


def _sqlite():
    from .backend import SQLiteDialect

    return SQLiteDialect()


def _sql(node, dialect) -> tuple[str, list]:
    if isinstance(node, Bool):
        compiled = [_sql(part, dialect) for part in node.parts]
        args = [a for _, extra in compiled for a in extra]
        if node.op == "not":
            return f"NOT coalesce({compiled[0][0]}, false)", args
        return f" {node.op.upper()} ".join(f"coalesce({sql}, false)" for sql, _ in compiled), args
    return _compare(node, dialect)


def _compare(node: Compare, dialect) -> tuple[str, list]:
    field, op, value = node.field, node.op, node.value
    if field == "folder":
        if op != "=" or not isinstance(value, str):
            raise QueryError(f"folder: only 'folder = /path' is supported (at position {node.pos + 1})")
        return folder_range(value, dialect)
    if op == "in":
        parts = [_compare(Compare(field, "=", v, node.pos), dialect) for v in value]
        return (" OR ".join(f"coalesce({sql}, false)" for sql, _ in parts),
                [a for _, x in parts for a in x])
    if op == "!=":
        sql, args = _compare(Compare(field, "=", value, node.pos), dialect)
        return f"NOT coalesce({sql}, false)", args
    if field in COLUMNS:
        sql = dialect.no_index("filename") if field == "filename" and op == "glob" else COLUMNS[field]
        return _column(sql, op, value, dialect, numeric=field == "system.size")
    root, _, rest = field.partition(".")
    return dialect.json_condition(f'"{root}"', rest.split("."), op, value)


def folder_bounds(folder: str) -> tuple[str, str]:
    """(low, high): every filename under `folder` (any depth) is > low and < high."""
    prefix = "/" + folder.strip("/") + "/" if folder.strip("/") else "/"
    return prefix, prefix[:-1] + "0"  # '0' follows '/'


def folder_range(folder: str, dialect=None) -> tuple[str, list]:
    """Every item under `folder` (any depth). Not an index range (`no_index`: SQLite would
    take it as the keyset page's range and drop the page's own bound): pages get the range
    from `filename_bounds` instead."""
    low, high = folder_bounds(folder)
    column = (dialect or _sqlite()).no_index("filename")
    return f"{column} > ? AND {column} < ?", [low, high]


def filename_bounds(queries: str | list[str] | tuple[str, ...]) -> tuple[str, str | None] | None:
    """(low, high) that every matching filename lies strictly between (high None: no end),
    from the folders and literal glob prefixes that must hold; None if nothing bounds them.
    A keyset page combines these with its cursor into one index range."""
    if isinstance(queries, str):
        queries = [queries]
    low, high = "", None
    for query in queries:
        for node in _conjuncts(parse(query)):
            bounds = None
            if node.field == "folder" and node.op == "=" and isinstance(node.value, str):
                bounds = folder_bounds(node.value)
            elif node.field == "filename" and node.op == "glob":
                prefix = re.split(r"[*?\[]", node.value, maxsplit=1)[0]
                if prefix:
                    bounds = (prefix[:-1] + chr(ord(prefix[-1]) - 1) + "\U0010ffff"
                              if prefix[-1] > "\x00" else "", prefix[:-1] + chr(ord(prefix[-1]) + 1))
            if bounds:
                low = max(low, bounds[0])
                high = bounds[1] if high is None else min(high, bounds[1])
    return (low, high) if low or high is not None else None


def _conjuncts(node) -> list[Compare]:
    if isinstance(node, Compare):
        return [node]
    if node.op == "and":
        return [c for part in node.parts for c in _conjuncts(part)]
    return []


def _column(sql: str, op: str, value: Any, dialect, *, numeric: bool = False) -> tuple[str, list]:
    if op == "exists":
        return f"{sql} IS NOT NULL", []
    if op == "glob":
        return dialect.glob(sql), [dialect.glob_pattern(value)]
    if op == "like":
        return dialect.like(sql), [value]
    if op == "contains":
        return f"instr(CAST({sql} AS TEXT), ?) > 0", [str(value)]
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return ("false", []) if op != "=" or value is not None else (f"{sql} IS NULL", [])
    if dialect.strict_types and isinstance(value, int | float) != numeric:
        # SQLite converts the value to the column's type where it can: so does this
        if not numeric:
            value = str(value)
        elif _NUMBER.match(value.strip()):
            value = json.loads(value.strip())
        else:
            return "false", []
    return f"{sql} {op} ?", [value]
