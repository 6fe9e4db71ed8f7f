"""The shipped workflow types: every module here declares one as `WORKFLOW_TYPE`. Adding a type is adding a file."""

import importlib
import pkgutil

from services.orchestrator.domain.declaration import WorkflowType
from services.orchestrator.domain.engine import Engine


def _discover() -> dict[str, WorkflowType]:
    found = {}
    for module in pkgutil.iter_modules(__path__):
        declared: WorkflowType = importlib.import_module(f"{__name__}.{module.name}").WORKFLOW_TYPE
        found[declared.name] = declared
    return found


WORKFLOW_TYPES: dict[str, WorkflowType] = _discover()
SHIPPED = Engine(WORKFLOW_TYPES)  # the engine for the shipped types, as the orchestrator runs it
