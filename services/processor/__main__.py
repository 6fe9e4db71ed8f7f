"""`python -m services.processor`: the simulated job worker, with /metrics and /healthz on WF_PROCESSOR_PORT."""

from runtime.stopping import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # first: a stop during start-up is clean too (the worker takes SIGTERM over once it runs)

from runtime.observability import configure_logging  # noqa: E402 (after the handler)
from services.processor.app import create_app  # noqa: E402 (after the handler)
from services.processor.settings import ProcessorSettings  # noqa: E402 (after the handler)

configure_logging("processor")
create_app(ProcessorSettings()).run_forever()
