"""The shipped workflow types: each is a definition document in the repository's `types/` folder, which the
orchestrator publishes as the first version of its type when the types bucket has none."""

from pathlib import Path

import yaml

from contracts.definitions import TypeDefinition
from services.orchestrator.domain.declaration import TypeVersions, WorkflowType
from services.orchestrator.domain.engine import Engine

SHIPPED_DOCUMENTS = Path(__file__).resolve().parents[4] / "types"


def read_definition(path: Path) -> TypeDefinition:
    return TypeDefinition.model_validate(yaml.safe_load(path.read_text()))


SHIPPED_DEFINITIONS = {
    definition.name: definition for definition in map(read_definition, sorted(SHIPPED_DOCUMENTS.glob("*.yaml")))
}
WORKFLOW_TYPES: dict[str, WorkflowType] = {
    name: WorkflowType.compile(definition) for name, definition in SHIPPED_DEFINITIONS.items()
}
SHIPPED = Engine(TypeVersions(WORKFLOW_TYPES.values()))  # the engine for the shipped types' first versions
