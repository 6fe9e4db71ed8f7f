"""Pages of a listing. A list answers a JSON array, as it always did; when more items follow, the response says where
the next page starts in two headers: `X-Next-Cursor` (the value to pass back) and `Link: <url>; rel="next"` (the
whole next request)."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar
from urllib.parse import urlencode

from litestar import Request
from litestar.datastructures import ResponseHeader
from litestar.exceptions import ValidationException

from contracts.state import WorkflowState

T = TypeVar("T")
EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None  # where the next page starts; None on the last page


@dataclass(frozen=True, order=True)
class ListCursor:
    """A position in the workflow list, which is ordered newest first by (created_at, id). A page continues after
    the last item of the one before it, so workflows created meanwhile neither shift nor repeat items."""

    created_at: datetime
    workflow_id: str

    @classmethod
    def of(cls, state: WorkflowState) -> "ListCursor":
        return cls(state.created_at or EARLIEST, state.id)

    def encode(self) -> str:
        text = json.dumps([self.created_at.isoformat(), self.workflow_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> "ListCursor":
        """Raises a 422 for anything this API did not hand out."""
        try:
            created_at, workflow_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            position = cls(datetime.fromisoformat(created_at), str(workflow_id))
            if position.created_at.tzinfo is None:
                raise ValueError("naive time")
            return position
        except (ValueError, TypeError, binascii.Error):
            message = "not a cursor this API gave out (pass X-Next-Cursor back as it came)"
            raise ValidationException(
                message, extra=[{"key": "cursor", "message": message, "source": "query"}]
            ) from None


NEXT_PAGE_HEADERS = [
    ResponseHeader(
        name="X-Next-Cursor",
        description="present when more items follow: pass it back to get them (as `cursor` for workflows, as "
        "`after` for events)",
        documentation_only=True,
    ),
    ResponseHeader(
        name="Link",
        description='present when more items follow: `<next page URL>; rel="next"`',
        documentation_only=True,
    ),
]


def next_page_headers(request: Request, page: Page, parameter: str) -> dict[str, str]:
    """The headers that point at the next page: the same request with `parameter` set to where it starts."""
    if page.next is None:
        return {}
    query = [(key, value) for key, value in request.query_params.multi_items() if key != parameter]
    next_query = urlencode([*query, (parameter, page.next)])
    return {"X-Next-Cursor": page.next, "Link": f'<{request.url.path}?{next_query}>; rel="next"'}
