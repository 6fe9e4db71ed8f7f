"""`wf`: the command line. Every command is one or a few HTTP requests to the API (`--url`, or `WF_API_URL`);
`watch` also reads the broadcaster's WebSocket. Both with the API token of `--token`, or `WF_TOKEN`. Over HTTPS and
WSS the servers' certificates must be signed by the authority of `--ca` or `WF_CA_FILE` (else: the system's). The
exit codes are EXIT_CODES (`wf --help`)."""

import argparse
import json
import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from services.cli import bulk
from services.cli.api import Api, CliError
from services.cli.output import event_line, workflow_details, workflow_line, workflow_table
from services.cli.watch import watch

DEFAULT_API_URL = "http://127.0.0.1:8000"
EXIT_OK, EXIT_FAILED, EXIT_PENDING, EXIT_INTERRUPTED = 0, 1, 3, 130
MAX_PAGE = 100


def workflow_path(workflow_id: str) -> str:
    return f"/workflows/{quote(workflow_id, safe='')}"  # an id with a slash is refused by the API, not misrouted


def show_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


# commands


def outcome(args: argparse.Namespace, result: dict[str, Any]) -> int:
    """Print what became of a command: the workflow it left, or that no outcome came within the wait."""
    if args.json:
        show_json(result)
    elif result["outcome"] == "pending":
        print(f"{result['workflow_id']}  pending")
        print(f"wf: no outcome within the wait; command {result['command_id']} may still apply", file=sys.stderr)
    else:
        print(workflow_line(result["workflow"]))
    return EXIT_PENDING if result["outcome"] == "pending" else EXIT_OK


def create(api: Api, args: argparse.Namespace) -> int:
    body = {"type": args.type, "type_version": args.type_version, "start": args.start, "workflow_id": args.id}
    body |= {"input": args.input}
    body = {key: value for key, value in body.items() if value is not None}
    return outcome(args, api.request("POST", "/workflows", params={"wait": args.wait}, body=body).body)


def decision(kind: str, body: Callable[[argparse.Namespace], dict[str, Any] | None] = lambda _: None):
    """A command on an existing workflow: POST /workflows/{id}/{kind} with the body the arguments make."""

    def send(api: Api, args: argparse.Namespace) -> int:
        path = f"{workflow_path(args.workflow_id)}/{kind}"
        return outcome(args, api.request("POST", path, params={"wait": args.wait}, body=body(args)).body)

    return send


def list_workflows(api: Api, args: argparse.Namespace) -> int:
    generic = {
        "business_state": args.business,
        "infra_status": args.infra,
        "type": args.type,
        "waiting_for": args.waiting_for,
        "created_after": args.created_after,
        "created_before": args.created_before,
        "sort": args.sort,
        "archived": "true" if args.archived else None,
    }
    return show_list(api, args, "/workflows", generic)


def inbox(api: Api, args: argparse.Namespace) -> int:
    return show_list(api, args, "/me/inbox", {"type": args.type})


def show_list(api: Api, args: argparse.Namespace, path: str, generic: dict[str, str | None]) -> int:
    """A list as a table (or JSON), page after page up to --limit. The search-field filters go as they are written
    (`amount>=1000`): the operator is part of the query's text, not a name=value pair."""
    generic = {name: value for name, value in generic.items() if value is not None} | {
        "limit": min(args.limit, MAX_PAGE)
    }
    query = "&".join([urlencode(generic), *(quote(expression, safe="") for expression in args.filters)])
    workflows: list[dict[str, Any]] = []
    for page in api.pages(f"{path}?{query}", {}):
        workflows.extend(page)
        if len(workflows) >= args.limit:
            break
    workflows = workflows[: args.limit]
    if args.json:
        show_json(workflows)
    elif workflows:
        print(workflow_table(workflows))
    else:
        print("no workflows", file=sys.stderr)
    return EXIT_OK


def show(api: Api, args: argparse.Namespace) -> int:
    workflow = api.request("GET", workflow_path(args.workflow_id)).body
    events = [recorded for page in api.pages(f"{workflow_path(args.workflow_id)}/events", {}) for recorded in page]
    if args.json:
        show_json({"workflow": workflow, "events": events})
        return EXIT_OK
    print(workflow_details(workflow))
    print("\ntimeline")
    for recorded in events:
        print(event_line(recorded))
    return EXIT_OK


def list_types(api: Api, args: argparse.Namespace) -> int:
    types = api.request("GET", "/types").body
    if args.json:
        show_json(types)
        return EXIT_OK
    for info in types:
        print(f"{info['name']}  {info['title']}  (starts in {info['initial']})")
        for state in info["states"]:
            print(f"  {state['name']:<24} {state['kind']:<10} accepts: {', '.join(state['accepts']) or '-'}")
    return EXIT_OK


def apply_type(api: Api, args: argparse.Namespace) -> int:
    """Publish a definition file (YAML or JSON) as its type's next version; its problems, every one, when refused."""
    try:
        with open(args.file) as file:
            definition = yaml.safe_load(file)
    except (OSError, yaml.YAMLError) as error:
        print(f"wf: cannot read {args.file}: {error}", file=sys.stderr)
        return EXIT_FAILED
    name = definition.get("name") if isinstance(definition, dict) else None
    if not isinstance(name, str) or not name:
        print(f"wf: {args.file} names no type (`name:`)", file=sys.stderr)
        return EXIT_FAILED
    reply = api.request("PUT", f"/types/{quote(name, safe='')}", body=definition)
    if args.json:
        show_json(reply.body)
    elif reply.body["outcome"] == "unchanged":
        print(f"{name} v{reply.body['version']}  unchanged (the latest version is the same)")
    else:
        print(f"{name} v{reply.body['version']}  published")
        for change in reply.body["changes"]:
            print(f"  {change}")
    return EXIT_OK


def type_versions(api: Api, args: argparse.Namespace) -> int:
    versions = api.request("GET", f"/types/{quote(args.name, safe='')}/versions").body
    if args.json:
        show_json(versions)
        return EXIT_OK
    for each in versions:
        changes = "; ".join(each["changes"]) or "first version"
        print(f"v{each['version']:<4} {each['published_at'][:19]}  by {each['published_by']:<12} {changes}")
    return EXIT_OK


def follow(api: Api, args: argparse.Namespace) -> int:
    return watch(api, args.workflow_id, args.since, args.count, args.json)


# arguments


EXIT_CODES = f"""exit codes:
  {EXIT_OK}    done
  {EXIT_FAILED}    refused or failed (the server's reason is printed)
  2    bad usage
  {EXIT_PENDING}    sent, but no outcome within the wait (it may still apply)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

shell completion: eval "$(wf completion bash)" (or zsh), e.g. in ~/.bashrc"""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="wf",
        description="Drive and watch approval workflows through the HTTP API.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"wf {version('approval-workflows')}")
    root.add_argument("--url", default=os.environ.get("WF_API_URL", DEFAULT_API_URL), help="the API (env WF_API_URL)")
    root.add_argument("--token", default=os.environ.get("WF_TOKEN"), help="the API token (env WF_TOKEN)")
    root.add_argument(
        "--ca",
        default=os.environ.get("WF_CA_FILE") or None,
        metavar="FILE",
        help="trust the servers' certificates this authority signed, for https:// (env WF_CA_FILE)",
    )
    root.add_argument("--json", action="store_true", help="print the API's JSON")
    # The same options after the command (`wf show ID --json`); SUPPRESS keeps them from resetting the root's values.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="the API (env WF_API_URL)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="the API token (env WF_TOKEN)")
    common.add_argument("--ca", default=argparse.SUPPRESS, metavar="FILE", help="the servers' authority (WF_CA_FILE)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_command(name: str, *parents: argparse.ArgumentParser, **options: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common, *parents], **options)

    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--wait", type=float, metavar="SECONDS", help="how long to wait for the outcome (0: not at all)"
    )
    on_workflow = argparse.ArgumentParser(add_help=False, parents=[waiting])
    on_workflow.add_argument("workflow_id", metavar="ID")

    command = add_command("create", waiting, help="create a workflow")
    command.add_argument("--type", default="approval", help="its workflow type (default approval)")
    command.add_argument("--type-version", type=positive, metavar="N", help="its type's version (default: the latest)")
    command.add_argument("--start", action="store_true", help="and process it at once")
    command.add_argument("--id", help="choose its id")
    command.add_argument("--input", type=json_object, metavar="JSON", help="its input, a JSON object")
    command.set_defaults(run=create)

    add_command("process", on_workflow, help="process it").set_defaults(run=decision("process"))
    # Who decides is the token's holder; `--as` names them, and the API refuses any other name.
    deciding = argparse.ArgumentParser(add_help=False, parents=[on_workflow])
    deciding.add_argument("--as", dest="approver", metavar="NAME", help="who (default: the token's holder)")
    command = add_command("approve", deciding, help="approve its output")
    command.add_argument("--comment", default="")
    command.set_defaults(run=decision("approve", lambda a: as_decider(a, comment=a.comment)))
    command = add_command("reject", deciding, help="reject its output: it is processed again")
    command.add_argument("--reason", default="")
    command.set_defaults(run=decision("reject", lambda a: as_decider(a, reason=a.reason)))
    for kind, text in (("cancel", "stop it: it ends Cancelled"), ("terminate", "end it at once, as Errored")):
        command = add_command(kind, on_workflow, help=text)
        command.add_argument("--reason", default="")
        command.set_defaults(run=decision(kind, lambda a: {"reason": a.reason}))
    for kind, text in (("retry", "run an errored one again from the failed step"), ("archive", "hide an ended one")):
        add_command(kind, on_workflow, help=text).set_defaults(run=decision(kind))

    command = add_command("ls", help="list and search workflows, newest first")
    command.add_argument(
        "filters",
        nargs="*",
        metavar="FIELD<op>VALUE",
        help="a search field its type declares, compared: amount>=1000, requester=ann "
        "(=, !=, >=, <=, >, <; quote them from the shell)",
    )
    command.add_argument("--business", metavar="STATE", help="only in this business state")
    command.add_argument("--infra", metavar="STATUS", help="only with this infrastructure status")
    command.add_argument("--type", help="only of this workflow type")
    command.add_argument("--waiting-for", metavar="WHO", help="only those this person (or role:<role>) may answer now")
    command.add_argument("--created-after", metavar="WHEN", help="a date (2026-12-01) or a time")
    command.add_argument("--created-before", metavar="WHEN", help="a date or a time")
    command.add_argument(
        "--sort",
        choices=["created_at", "-created_at", "updated_at", "-updated_at"],
        help="the order (default -created_at: newest first)",
    )
    command.add_argument("--archived", action="store_true", help="the archived ones instead")
    command.add_argument("--limit", type=positive, default=50, help="at most this many (default 50)")
    command.set_defaults(run=list_workflows)

    command = add_command("inbox", help="what waits for you (the token's holder) now, the longest waiting first")
    command.add_argument("filters", nargs="*", metavar="FIELD<op>VALUE", help="as for ls: amount>=1000")
    command.add_argument("--type", help="only of this workflow type")
    command.add_argument("--limit", type=positive, default=50, help="at most this many (default 50)")
    command.set_defaults(run=inbox)

    command = add_command("show", help="a workflow's two states and its timeline")
    command.add_argument("workflow_id", metavar="ID")
    command.set_defaults(run=show)

    command = add_command("types", help="the workflow types and what each state accepts; publish a version")
    command.set_defaults(run=list_types)
    versions = command.add_subparsers(dest="types_command", metavar="apply FILE | versions NAME")
    publish = versions.add_parser("apply", parents=[common], help="publish a definition (YAML or JSON) as a version")
    publish.add_argument("file", metavar="FILE")
    publish.set_defaults(run=apply_type)
    listing = versions.add_parser("versions", parents=[common], help="a type's versions: when, who, what changed")
    listing.add_argument("name", metavar="NAME")
    listing.set_defaults(run=type_versions)

    command = add_command("migrate", on_workflow, help="move it onto another version of its type")
    command.add_argument("--to", dest="to_version", type=positive, required=True, metavar="VERSION")
    command.set_defaults(run=decision("migrate", lambda a: {"to_version": a.to_version}))
    command = add_command("reassign", on_workflow, help="give the wait it is in to other people")
    command.add_argument("--to", action="append", required=True, metavar="NAME", help="who answers it (repeatable)")
    command.add_argument("--reason", default="")
    command.set_defaults(run=decision("reassign", lambda a: {"to": a.to, "reason": a.reason}))

    command = add_command("watch", help="events as they happen (of one workflow, given its id)")
    command.add_argument("workflow_id", metavar="ID", nargs="?")
    command.add_argument("--since", type=int, metavar="SEQUENCE", help="first the events after it (0: all)")
    command.add_argument("--count", type=positive, metavar="N", help="stop after N events")
    command.set_defaults(run=follow)

    bulk.add_arguments(add_command("bulk", help="act on every workflow the filters match, and follow it until done"))

    command = add_command("completion", help='print a shell completion script: eval "$(wf completion bash)"')
    command.add_argument("shell", choices=["bash", "zsh"])
    command.set_defaults(run=lambda _api, args: print_completion(root, args.shell))

    command = add_command("bench", help="run the benchmark (python -m bench.run; `wf bench -- --help`)")
    command.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="...", help="its options, e.g. --quick")
    command.set_defaults(run=run_bench)
    return root


def print_completion(root: argparse.ArgumentParser, shell: str) -> int:
    """A completion script for bash (zsh runs it through bashcompinit): the commands, then each command's options."""
    commands = next(action for action in root._actions if isinstance(action, argparse._SubParsersAction))
    options = {
        name: " ".join(option for action in command._actions for option in action.option_strings)
        for name, command in commands.choices.items()
    }
    cases = "\n".join(f'        {name}) words="{words}" ;;' for name, words in options.items())
    print(
        ("autoload -U +X bashcompinit && bashcompinit\n" if shell == "zsh" else "")
        + COMPLETION.format(commands=" ".join(options), cases=cases)
    )
    return EXIT_OK


COMPLETION = """_wf() {{
    local current=${{COMP_WORDS[COMP_CWORD]}} words command=""
    local i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in -*) ;; *) command=${{COMP_WORDS[i]}}; break ;; esac
    done
    case $command in
        "") words="{commands} --help --version" ;;
{cases}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$current"))
}}
complete -F _wf wf"""


def run_bench(api: Api, args: argparse.Namespace) -> int:
    from bench.run import main as bench  # the benchmark's own dependencies load only when it runs

    return bench([arg for arg in args.bench_args if arg != "--"])


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def as_decider(args: argparse.Namespace, **fields: str) -> dict[str, str]:
    """An approve or reject body: the approver only when `--as` names one."""
    return fields | ({"approver": args.approver} if args.approver else {})


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        api = Api(args.url, args.token, args.ca)
    except CliError as error:
        print(f"wf: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return args.run(api, args)
    except CliError as error:
        print(f"wf: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        api.close()
