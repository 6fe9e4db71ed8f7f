"""`python -m services.indexer`: the query side's index, kept from the read model; /metrics and /healthz on
WF_INDEXER_PORT."""

from runtime.stopping import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # first: a stop during start-up is clean too

from runtime.observability import configure_logging, serve  # noqa: E402 (after the handler)
from services.indexer.app import create_app  # noqa: E402 (after the handler)
from services.indexer.settings import IndexerSettings  # noqa: E402 (after the handler)

configure_logging("indexer")
settings = IndexerSettings()
serve(create_app(settings), settings.bind_host, settings.port)
