"""The store's SQL, written once for SQLite, made ready for PostgreSQL (asyncpg).

The store writes SQLite's dialect with `?` or `:name` placeholders. For PostgreSQL this module:
- numbers the placeholders `$1, $2, …` (a `:name` used twice is one number), skipping string literals,
  quoted names, comments and `::` casts, so a `?` inside a literal stays a question mark;
- turns SQLite's `json_each(X)` (a JSON array read as rows of `value`) into
  `json_array_elements_text(CAST(X AS json)) AS json_each(value)`, keeping an alias if one follows;
- coerces each argument to the parameter type PostgreSQL inferred, as SQLite's type affinity does
  (an int bound to a TEXT column is stored as its digits, a bool to an INTEGER as 0/1): asyncpg
  refuses a mismatched Python type, and the store passes snowflakes as ints in places.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

Params = Sequence[Any] | Mapping[str, Any]

_JSON_EACH = re.compile(r"\bjson_each\(([^()]*)\)(?:\s+AS\s+(\w+))?", re.IGNORECASE)


@functools.lru_cache(maxsize=2048)
def to_postgresql(sql: str) -> tuple[str, tuple[str, ...] | int]:
    """(PostgreSQL text, how to bind): a tuple of names for `:name` placeholders, else how many `?`.
    Raises ValueError when a statement mixes both kinds."""
    out: list[str] = []
    names: list[str] = []
    positional = 0
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == char:
                    if end + 1 < n and sql[end + 1] == char:  # '' or "" escapes the quote
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end])
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end])
            i = end
        elif char == "?":
            positional += 1
            out.append(f"${positional}")
            i += 1
        elif char == ":" and sql.startswith("::", i):
            out.append("::")
            i += 2
        elif char == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            end = i + 1
            while end < n and (sql[end].isalnum() or sql[end] == "_"):
                end += 1
            name = sql[i + 1 : end]
            if name not in names:
                names.append(name)
            out.append(f"${names.index(name) + 1}")
            i = end
        else:
            out.append(char)
            i += 1
    if names and positional:
        raise ValueError("a statement mixes ? and :name placeholders")
    text = _JSON_EACH.sub(_json_each, "".join(out))
    return text, (tuple(names) if names else positional)


def _json_each(match: re.Match[str]) -> str:
    return (
        f"json_array_elements_text(CAST({match.group(1)} AS json)) AS {match.group(2) or 'json_each'}(value)"
    )


def bind(order: tuple[str, ...] | int, params: Params) -> list[Any]:
    """The arguments in placeholder order. Raises ValueError when they do not fit the statement."""
    if isinstance(order, int):
        if isinstance(params, Mapping):
            raise ValueError("named parameters for a statement with ? placeholders")
        if len(params) != order:
            raise ValueError(f"the statement has {order} placeholders, {len(params)} values given")
        return list(params)
    if not isinstance(params, Mapping):
        raise ValueError("the statement has :name placeholders; give a dict")
    missing = [name for name in order if name not in params]
    if missing:
        raise ValueError(f"no value for {missing}")
    return [params[name] for name in order]


_TEXT = frozenset({"text", "varchar", "bpchar", "name"})
_INTEGERS = frozenset({"int2", "int4", "int8"})
_FLOATS = frozenset({"float4", "float8"})


def coerce(value: Any, type_name: str) -> Any:
    """`value` as asyncpg accepts it for a parameter of PostgreSQL type `type_name`, the way SQLite's
    type affinity would have stored it."""
    if value is None:
        return None
    if type_name in _TEXT:
        if isinstance(value, bool):
            return str(int(value))
        return without_nul(value if isinstance(value, str) else str(value))
    if type_name in _INTEGERS:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value)
        return value
    if type_name in _FLOATS:
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):
            return float(value)
        return value
    if type_name == "numeric" and isinstance(value, bool):
        return int(value)
    if type_name == "bool" and isinstance(value, int | float):
        return bool(value)
    if type_name in ("json", "jsonb"):
        return _json_without_nul(value if isinstance(value, str) else json.dumps(value))
    return value


def without_nul(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL's text cannot hold (SQLite's can)."""
    return text.replace("\x00", "") if "\x00" in text else text


# A JSON escape of NUL (`\u0000`, not preceded by an escaped backslash), which jsonb refuses.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _json_without_nul(text: str) -> str:
    text = without_nul(text)
    return _JSON_NUL.sub(r"\1", text) if "\\u0000" in text else text


def rowcount(status: str) -> int:
    """The rows a command changed, from its status tag (`UPDATE 3`, `INSERT 0 1`, `DELETE 0`)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def quote_name(name: str) -> str:
    """A table or column name quoted for both engines."""
    return '"' + name.replace('"', '""') + '"'
