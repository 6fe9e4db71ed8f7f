"""Pages of a listing. A list answers a JSON array, as it always did; when more items follow, the response says where
the next page starts in two headers: `X-Next-Cursor` (the value to pass back) and `Link: <url>; rel="next"` (the
whole next request)."""

from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote_plus, urlencode

from litestar import Request
from litestar.datastructures import ResponseHeader

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None  # where the next page starts; None on the last page


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
    """The headers that point at the next page: the same request with `parameter` set to where it starts. The query
    is kept as it came, part for part: a filter such as `amount>1000` is no name=value pair to parse and encode again."""
    if page.next is None:
        return {}
    kept = [part for part in request.url.query.split("&") if part and unquote_plus(part).partition("=")[0] != parameter]
    next_query = "&".join([*kept, urlencode({parameter: page.next})])
    return {"X-Next-Cursor": page.next, "Link": f'<{request.url.path}?{next_query}>; rel="next"'}
