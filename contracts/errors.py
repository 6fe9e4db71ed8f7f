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


def printable(text: str) -> str:
    """`text` with every character that prints as nothing, or breaks the line, written as its escape (`\\x07`): for
    what a client chose (a subject, a field) quoted in an error or a header."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
