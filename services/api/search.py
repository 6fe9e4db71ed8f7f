"""What `GET /workflows` is asked for: the generic filters, the type's search fields compared with an operator
(`amount>=1000`, `requester=ann`), the order, and where the page starts. Parsed from the raw query string, since an
operator such as `>=` is part of a parameter's name there; anything unknown or malformed is refused with a 400 that
names it. Values stay values: the index's queries bind them, no text of a request reaches SQL."""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Literal, cast
from urllib.parse import unquote_plus

from contracts.state import InfraStatus
from contracts.types import WorkflowTypeInfo

SORTS = ("created_at", "updated_at")  # (and `-` before one: newest first, the default)
Operator = Literal["=", "!=", ">=", "<=", ">", "<"]
EXPRESSION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(>=|<=|!=|>|<|=)(.*)$", re.DOTALL)
TIME_FILTERS = {
    "created_after": ("created_at", ">="),
    "created_before": ("created_at", "<"),
    "updated_after": ("updated_at", ">="),
    "updated_before": ("updated_at", "<"),
}
TEXT_FILTERS = ("type", "business_state", "infra_status", "waiting_for")
PAGING = ("limit", "cursor", "sort", "archived")


class BadFilter(Exception):
    """A filter the index cannot take: answered 400 with what is wrong."""


@dataclass(frozen=True)
class FieldFilter:
    name: str
    operator: Operator
    value: float | str


@dataclass(frozen=True)
class Search:
    type: str | None = None
    business_state: str | None = None
    infra_status: str | None = None
    waiting_for: tuple[str, ...] = ()  # any of these actors (a name, or role:<role>)
    archived: bool = False
    times: tuple[tuple[str, str, datetime], ...] = ()  # (column, operator, moment)
    fields: tuple[FieldFilter, ...] = ()
    sort: str = "created_at"
    descending: bool = True
    limit: int = 100
    after: "Cursor | None" = None


@dataclass(frozen=True)
class Cursor:
    """A position in a list ordered by `sort` then id: the next page starts after it, so workflows that change or
    appear meanwhile neither shift nor repeat items."""

    sort: str
    value: datetime
    workflow_id: str

    def encode(self) -> str:
        text = json.dumps([self.sort, self.value.isoformat(), self.workflow_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str, sort: str) -> "Cursor":
        try:
            sorted_by, value, workflow_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            position = cls(str(sorted_by), datetime.fromisoformat(value), str(workflow_id))
            if "\x00" in position.workflow_id:
                raise ValueError("NUL")  # (no workflow id holds one)
        except (ValueError, TypeError, binascii.Error):
            raise BadFilter("cursor: not one this API gave out (pass X-Next-Cursor back as it came)") from None
        if position.sort != sort or position.value.tzinfo is None:
            raise BadFilter(f"cursor: it continues a list sorted by {position.sort}, not by {sort}")
        return position


@dataclass
class _Parsed:
    single: dict[str, str] = field(default_factory=dict)
    waiting_for: list[str] = field(default_factory=list)
    fields: list[tuple[str, Operator, str]] = field(default_factory=list)


def parse(query: str, types: list[WorkflowTypeInfo], max_limit: int, default_sort: str = "-created_at") -> Search:
    """The search a raw query string asks for, given the workflow types (their search fields)."""
    parsed = _Parsed()
    for part in query.split("&"):
        if not part:
            continue
        match = EXPRESSION.match(unquote_plus(part))
        if match is None:
            raise BadFilter(
                f"{unquote_plus(part)!r}: a filter is name=value, or a search field compared with =, !=, >=, <=, > or <"
            )
        name, operator, value = match.groups()
        if "\x00" in value:
            raise BadFilter(f"{name}: a value cannot contain NUL (%00)")
        if name in (*TEXT_FILTERS, *TIME_FILTERS, *PAGING):
            if operator != "=":
                raise BadFilter(f"{name}: takes = only, not {operator}")
            if name == "waiting_for":
                parsed.waiting_for.append(value)
            elif name in parsed.single:
                raise BadFilter(f"{name}: given twice")
            else:
                parsed.single[name] = value
        else:
            parsed.fields.append((name, cast(Operator, operator), value))  # (EXPRESSION matches only those)
    single = parsed.single
    workflow_type = single.get("type")
    known = [info for info in types if workflow_type in (None, info.name)]  # (a type nobody declared lists nothing)
    sort = single.get("sort", default_sort)
    if sort.lstrip("-") not in SORTS:
        raise BadFilter(f"sort: {sort!r} is not one of {', '.join(SORTS)} (a leading - sorts newest first)")
    search = Search(
        type=workflow_type,
        business_state=single.get("business_state"),
        infra_status=_infra_status(single.get("infra_status")),
        waiting_for=tuple(parsed.waiting_for),
        archived=_boolean("archived", single.get("archived", "false")),
        times=tuple(
            (TIME_FILTERS[name][0], TIME_FILTERS[name][1], _moment(name, single[name]))
            for name in TIME_FILTERS
            if name in single
        ),
        fields=tuple(_field_filter(known, workflow_type, *expression) for expression in parsed.fields),
        sort=sort.lstrip("-"),
        descending=sort.startswith("-"),
        limit=_limit(single.get("limit", "100"), max_limit),
    )
    if "cursor" in single:
        search = replace(search, after=Cursor.decode(single["cursor"], search.sort))
    return search


def _field_filter(
    types: list[WorkflowTypeInfo], type_name: str | None, name: str, operator: Operator, value: str
) -> FieldFilter:
    kinds = {info.search_fields[name] for info in types if name in info.search_fields}
    if not kinds:
        fields = sorted({field for info in types for field in info.search_fields})
        where = f"of type {type_name}" if type_name else "of any type"
        known = ", ".join(fields) or "none"
        raise BadFilter(
            f"{name}: not a filter: the generic ones are {', '.join(TEXT_FILTERS + tuple(TIME_FILTERS))}, "
            f"and the search fields {where} are {known}"
        )
    if len(kinds) > 1:
        raise BadFilter(f"{name}: a number in one type and text in another: say which type (type=...)")
    if kinds == {"text"}:
        if operator not in ("=", "!="):
            raise BadFilter(f"{name} is text: compare it with = or !=, not {operator}")
        return FieldFilter(name, operator, value)
    try:
        number = float(value)
    except ValueError:
        raise BadFilter(f"{name} is a number: {value!r} is not one") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise BadFilter(f"{name}: {value!r} is not a finite number")
    return FieldFilter(name, operator, number)


def _infra_status(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in {status.value for status in InfraStatus}:
        raise BadFilter(f"infra_status: {value!r} is not one of {', '.join(status.value for status in InfraStatus)}")
    return value


def _boolean(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise BadFilter(f"{name}: true or false, not {value!r}")
    return value.lower() == "true"


def _moment(name: str, value: str) -> datetime:
    """A date (midnight UTC) or a time; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(value) if "T" in value or " " in value else None
        if moment is None:
            moment = datetime.combine(date.fromisoformat(value), datetime.min.time())
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # (a time whose UTC falls outside the years 1 to 9999 overflows)
        raise BadFilter(f"{name}: {value!r} is not a date (2026-12-01) or a time (2026-12-01T09:30:00Z)") from None


def _limit(value: str, most: int) -> int:
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise BadFilter(f"limit: a whole number from 1 to {most}, not {value!r}")
    return limit
