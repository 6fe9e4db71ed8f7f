"""`wf watch`: events as they happen, from the broadcaster's WebSocket (its URL comes from the API's `/config`).

Every message carries a stream sequence: each event's own, and each heartbeat's position (every event up to it has
been sent). After a lost connection the tail reconnects with `?since=` that sequence, so it shows every event once,
with no gap."""

import json
import sys
import time
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from services.cli.api import Api, CliError
from services.cli.output import event_line

CANNOT_RESUME = 1008  # the broadcaster refused the request itself (e.g. `since` past the end of the log)
UNAUTHORIZED = 4401  # no valid token: trying again cannot help
FIRST_RETRY_S, LAST_RETRY_S = 0.5, 10.0
OPEN_TIMEOUT_S = 10.0


def watch(api: Api, workflow_id: str | None, since: int | None, count: int | None, as_json: bool) -> int:
    """Print events until `count` of them were printed (None: until interrupted)."""
    url = api.request("GET", "/config").body["broadcaster_url"]
    position, printed, retry_s = since, 0, FIRST_RETRY_S
    while True:
        query = urlencode({k: v for k, v in (("workflow_id", workflow_id), ("since", position)) if v is not None})
        try:
            address = f"{url}?{query}" if query else url
            tls = api.tls if address.startswith("wss:") else None
            with connect(address, open_timeout=OPEN_TIMEOUT_S, additional_headers=api.auth_headers, ssl=tls) as socket:
                retry_s = FIRST_RETRY_S
                for text in socket:
                    message = json.loads(text)
                    position = max(position or 0, message["sequence"])
                    if "event" not in message:  # a heartbeat: only the position moves
                        continue
                    print(json.dumps(message) if as_json else event_line(message, with_workflow=not workflow_id))
                    sys.stdout.flush()
                    printed += 1
                    if count is not None and printed >= count:
                        return 0
            reason = "the broadcaster closed the connection"
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code in (CANNOT_RESUME, UNAUTHORIZED):
                raise CliError(f"the broadcaster refused: {closed.rcvd.reason}") from None
            reason = f"connection lost ({closed})"
        except (OSError, InvalidHandshake, TimeoutError) as error:
            reason = f"cannot reach the broadcaster at {url} ({error})"
        except InvalidURI as error:
            raise CliError(f"the API gave a broadcaster URL that is not one: {error}") from None
        resume = f"from sequence {position}" if position is not None else "live"
        print(f"wf: {reason}; reconnecting {resume} in {retry_s:g}s", file=sys.stderr)
        time.sleep(retry_s)
        retry_s = min(retry_s * 2, LAST_RETRY_S)
