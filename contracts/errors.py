"""One readable wording for validation errors, on every surface (HTTP, dead letters, rejections)."""

from pydantic import ValidationError


def describe(error: ValidationError) -> str:
    """`field: problem; other.field: problem`, without pydantic's internal union names."""
    problems = []
    for item in error.errors(include_url=False):
        # For a tagged union the first location is the tag (e.g. `approve`); it reads as noise to a client.
        location = [str(part) for part in item["loc"] if not str(part).startswith(("function-", "tagged-union"))]
        problems.append(f"{'.'.join(location) or 'message'}: {item['msg']}")
    return "; ".join(problems)
