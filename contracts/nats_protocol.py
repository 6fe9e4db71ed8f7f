"""Reading every subject a client may publish to.

nats-py reads a delivered message's control line (`MSG <subject> <sid> [reply] <size>`, or `HMSG` with headers) with
`\\s`, which also matches a vertical tab and a form feed. The server separates those fields with spaces and tabs only,
and lets a client publish to a subject holding either character. nats-py then cannot parse the line and drops its
connection, on every delivery of that message (seen by fuzzing the command subjects: the message was never applied,
never dead-lettered, and took the orchestrator's connection down 20 times). A service that reads subjects any client
chose reads the control line as the server writes it."""

import re

from nats.protocol import parser

# nats-py's own patterns, with `[ \t]` where they had `\s` (and `[^ \t\r\n]` where they had `[^\s]`).
MSG_LINE = re.compile(rb"\AMSG[ \t]+([^ \t\r\n]+)[ \t]+([^ \t\r\n]+)[ \t]+(([^ \t\r\n]+)[ \t]+)?(\d+)\r\n")
HMSG_LINE = re.compile(
    rb"\AHMSG[ \t]+([^ \t\r\n]+)[ \t]+([^ \t\r\n]+)[ \t]+(([^ \t\r\n]+)[ \t]+)?(\d+)[ \t]+(\d+)\r\n"
)


def read_control_lines_as_the_server_writes_them() -> None:
    """Make this process's NATS clients split a control line on spaces and tabs only (the same groups as before)."""
    parser.MSG_RE, parser.HMSG_RE = MSG_LINE, HMSG_LINE
