"""`python -m services.api`: served with uvicorn; SIGTERM lets in-flight work finish, then drains NATS."""

from runtime.stopping import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # first: a stop during start-up is clean too

import sys  # noqa: E402 (after the handler)

from runtime.observability import configure_logging, serve  # noqa: E402 (after the handler)
from runtime.tokens import AuthNotConfigured  # noqa: E402 (after the handler)
from services.api.app import create_app  # noqa: E402 (after the handler)
from services.api.settings import ApiSettings  # noqa: E402 (after the handler)

configure_logging("api")
settings = ApiSettings()
try:
    app = create_app(settings)
except AuthNotConfigured as refusal:
    sys.exit(f"api: not starting: {refusal}")
serve(app, settings.bind_host, settings.port, settings.https)
