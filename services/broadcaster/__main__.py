"""`python -m services.broadcaster`: served with uvicorn; SIGTERM lets in-flight work finish, then drains NATS."""

from runtime.stopping import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # first: a stop during start-up is clean too

import sys  # noqa: E402 (after the handler)

from runtime.observability import configure_logging, serve  # noqa: E402 (after the handler)
from runtime.tokens import AuthNotConfigured  # noqa: E402 (after the handler)
from services.broadcaster.app import create_app  # noqa: E402 (after the handler)
from services.broadcaster.settings import BroadcasterSettings  # noqa: E402 (after the handler)

configure_logging("broadcaster")
settings = BroadcasterSettings()
try:
    app = create_app(settings)
except AuthNotConfigured as refusal:
    sys.exit(f"broadcaster: not starting: {refusal}")
serve(app, settings.bind_host, settings.port, settings.https)
