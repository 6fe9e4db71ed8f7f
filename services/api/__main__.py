"""`python -m services.api`: served with uvicorn; SIGTERM lets in-flight work finish, then drains NATS."""

from contracts.stopping import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # first: a stop during start-up is clean too

from contracts.observability import configure_logging, serve  # noqa: E402 (after the handler)
from services.api.app import create_app  # noqa: E402 (after the handler)
from services.api.settings import ApiSettings  # noqa: E402 (after the handler)

configure_logging("api")
settings = ApiSettings()
serve(create_app(settings), settings.bind_host, settings.port)
