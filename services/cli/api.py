"""The HTTP API as the CLI sees it: JSON in and out, every refusal turned into one readable error."""

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from runtime.settings import trusting

# Longer than the longest wait a command may ask the API for (60 s): the API answers 202 before this passes.
HTTP_TIMEOUT_S = 75.0


class CliError(Exception):
    """What went wrong, in words for the person at the terminal; the CLI prints it and exits non-zero."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    next_page: str | None  # the `Link: <...>; rel="next"` of a paged list


class Api:
    def __init__(self, base_url: str, token: str | None = None, ca_file: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # Sent with every request, and to the broadcaster (`wf watch`): the API's tokens are its tokens too.
        self.auth_headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Whom the servers' certificates must be signed by (HTTPS, WSS): `ca_file`'s authority, else the system's.
        self.tls: ssl.SSLContext = ssl.create_default_context()
        if ca_file:
            try:
                self.tls = trusting(ca_file, "--ca")
            except ValueError as error:
                raise CliError(str(error)) from None
        self._http = httpx.Client(
            base_url=self.base_url, timeout=HTTP_TIMEOUT_S, headers=self.auth_headers, verify=self.tls
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None) -> Reply:
        # No params at all rather than empty ones: httpx would drop the query of a `Link` URL for an empty dict.
        params = {key: value for key, value in (params or {}).items() if value is not None} or None
        try:
            response = self._http.request(method, path, params=params, json=body)
        except httpx.HTTPError as error:
            raise CliError(f"cannot reach the API at {self.base_url}: {error}") from None
        try:
            content = response.json() if response.content else None
        except ValueError:
            content = response.text
        if response.status_code == 401:
            raise CliError(f"{_refusal(response.status_code, content)}; give a token with --token or WF_TOKEN")
        if response.is_error:
            raise CliError(_refusal(response.status_code, content))
        return Reply(response.status_code, content, response.links.get("next", {}).get("url"))

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[list[Any]]:
        """Every page of a list, following each answer's `Link rel="next"`."""
        reply = self.request("GET", path, params=params)
        yield reply.body
        while reply.next_page:
            reply = self.request("GET", reply.next_page)
            yield reply.body


def _refusal(status: int, content: Any) -> str:
    """The API answers errors as RFC 9457 problem details (`{"title", "status", "detail", "code"?}`); anything else
    (a proxy's page) is shown as is."""
    if isinstance(content, dict) and "detail" in content:
        code = f", {content['code']}" if content.get("code") else ""
        if problems := content.get("problems"):  # a type definition's: each on its own line
            return f"the definition was refused (HTTP {status}{code}):" + "".join(f"\n  - {p}" for p in problems)
        return f"{content['detail']} (HTTP {status}{code})"
    return f"HTTP {status}: {str(content)[:500]}"
