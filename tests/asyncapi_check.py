"""Checks a message against the AsyncAPI document (contracts/asyncapi.py): the channel its subject is on, and whether
its payload fits one of that channel's messages."""

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from jsonschema import Draft202012Validator

NO_PAYLOAD = {"DeadLetter"}  # any bytes: what could not be read, as it came


@dataclass
class AsyncApiCheck:
    document: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @cached_property
    def channels(self) -> list[tuple[re.Pattern, str, list[str]]]:
        found = []
        for name, channel in self.document["channels"].items():
            pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^.]+", re.escape(channel["address"]))
            messages = [ref["$ref"].rsplit("/", 1)[1] for ref in channel["messages"].values()]
            found.append((re.compile(f"^{pattern}$"), name, messages))
        return found

    @cached_property
    def validators(self) -> dict[str, Draft202012Validator]:
        """One per channel: any of its messages."""
        validators = {}
        for _, name, messages in self.channels:
            one_of = [{"$ref": f"#/components/schemas/{message}"} for message in messages]
            validators[name] = Draft202012Validator({"oneOf": one_of, "components": self.document["components"]})
        return validators

    def check(self, subject: str, payload: bytes) -> None:
        """Record a problem when no channel has this subject, or its payload fits none of the channel's messages."""
        matching = [(name, messages) for pattern, name, messages in self.channels if pattern.match(subject)]
        if not matching:
            self.problems.append(f"{subject}: on no channel of the document")
            return
        [(channel, messages)] = matching
        if set(messages) <= NO_PAYLOAD:
            return
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than a parser goes
            self.problems.append(f"{subject} ({channel}): not JSON: {payload[:200]!r}")
            return
        errors = list(self.validators[channel].iter_errors(body))
        if errors:
            self.problems.append(f"{subject} ({channel}): fits none of {messages}: {errors[0].message[:300]}")
