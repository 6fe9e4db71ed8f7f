"""Reading every subject a client may publish to.

The server lets a client publish to a subject holding any bytes but spaces, tabs and line ends. nats-py reads what it
delivers more narrowly, in two ways, and each took the orchestrator's connection down (found by fuzzing the command
subjects, docs/decisions/0011):

- it reads a delivered message's control line (`MSG <subject> <sid> [reply] <size>`, or `HMSG` with headers) with
  `\\s`, which also matches a vertical tab and a form feed, where the server separates fields with spaces and tabs
  only: it could not parse the line and dropped the connection, on each of the message's 20 deliveries;
- it decodes a delivered subject as strict UTF-8: a subject that is not (only a client writing the protocol itself can
  send one) raised in its read loop, which then stopped reading for good, the connection still open. One such command
  silenced the orchestrator.

A service that reads subjects any client chose reads them as the server writes them, and decodes what is not UTF-8
as U+FFFD, as the server's own JSON API does."""

import re

from nats.aio.client import Client
from nats.protocol import parser

# nats-py's own patterns, with `[ \t]` where they had `\s` (and `[^ \t\r\n]` where they had `[^\s]`).
MSG_LINE = re.compile(rb"\AMSG[ \t]+([^ \t\r\n]+)[ \t]+([^ \t\r\n]+)[ \t]+(([^ \t\r\n]+)[ \t]+)?(\d+)\r\n")
HMSG_LINE = re.compile(rb"\AHMSG[ \t]+([^ \t\r\n]+)[ \t]+([^ \t\r\n]+)[ \t]+(([^ \t\r\n]+)[ \t]+)?(\d+)[ \t]+(\d+)\r\n")


def _build_message_of_any_subject(self: Client, sid: int, subject: bytes, reply: bytes, data: bytes, headers):
    """nats-py's own `Client._build_message`, decoding the subject and the reply whatever their bytes."""
    return self.msg_class(
        subject=subject.decode(errors="replace"),
        reply=reply.decode(errors="replace"),
        data=data,
        headers=headers,
        _client=self,
        _sid=sid,
    )


def read_every_subject_as_the_server_sends_it() -> None:
    """Make this process's NATS clients split a control line on spaces and tabs only (the same groups as before), and
    take a subject that is not UTF-8."""
    parser.MSG_RE, parser.HMSG_RE = MSG_LINE, HMSG_LINE
    Client._build_message = _build_message_of_any_subject
