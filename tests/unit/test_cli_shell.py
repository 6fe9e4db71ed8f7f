"""What `wf` tells a shell user without an API: its version, its exit codes, and completion a real bash runs."""

import subprocess
import sys
from importlib.metadata import version

import pytest

from services.cli.main import main


def test_version_names_the_installed_package(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"wf {version('approval-workflows')}"


def test_help_lists_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for code in ("0", "1", "2", "3", "130"):
        assert f"\n  {code} " in text, code


def completions(*words: str) -> list[str]:
    """What bash completes the last of `words` to, with the script `wf completion bash` prints."""
    script = subprocess.run(
        [sys.executable, "-m", "services.cli", "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    line = " ".join(words)
    probe = f'{script}\nCOMP_WORDS=(wf {line}); COMP_CWORD={len(words)}; _wf; printf "%s\\n" "${{COMPREPLY[@]}}"'
    return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split()


def test_bash_completes_commands_and_each_commands_own_options():
    assert completions("ap") == ["approve"]
    assert sorted(completions("b")) == ["bench", "bulk"]
    assert completions("ls", "--waiting") == ["--waiting-for"]
    assert completions("approve", "--waiting") == []  # ls's option, not approve's
    assert "--comment" in completions("approve", "--")
