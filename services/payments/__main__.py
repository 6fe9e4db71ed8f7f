"""`python -m services.payments`: the expense's `pay` step against WF_PAYMENTS_URL, with /metrics and /healthz on
WF_PAYMENTS_PORT. Run the processor without that step then (WF_PROCESSOR_STEPS=approval.process,expense.validate)."""

from runtime.stopping import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # first: a stop during start-up is clean too (the worker takes SIGTERM over once it runs)

from runtime.observability import configure_logging  # noqa: E402 (after the handler)
from services.payments.app import create_app  # noqa: E402 (after the handler)
from services.payments.settings import PaymentsSettings  # noqa: E402 (after the handler)

configure_logging("payments")
create_app(PaymentsSettings()).run_forever()  # type: ignore[call-arg]  (WF_PAYMENTS_URL comes from the environment)
