"""`python -m services.orchestrator`: the command consumer, with /metrics and /healthz on WF_ORCHESTRATOR_PORT."""

from runtime.stopping import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # first: a stop during start-up is clean too

from runtime.observability import configure_logging, serve  # noqa: E402 (after the handler)
from services.orchestrator.app import create_app  # noqa: E402 (after the handler)
from services.orchestrator.settings import OrchestratorSettings  # noqa: E402 (after the handler)

configure_logging("orchestrator")
settings = OrchestratorSettings()
serve(create_app(settings), settings.bind_host, settings.port)
