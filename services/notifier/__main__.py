"""`python -m services.notifier`: tells people what waits for them (webhooks, e-mail); /metrics and /healthz on
WF_NOTIFIER_PORT."""

from runtime.stopping import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # first: a stop during start-up is clean too

from runtime.observability import configure_logging, serve  # noqa: E402 (after the handler)
from services.notifier.app import create_app  # noqa: E402 (after the handler)
from services.notifier.settings import NotifierSettings  # noqa: E402 (after the handler)

configure_logging("notifier")
settings = NotifierSettings()
serve(create_app(settings), settings.bind_host, settings.port)
