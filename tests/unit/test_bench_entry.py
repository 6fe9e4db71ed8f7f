"""`wf bench` runs the benchmark with the options it is given."""

import pytest

from services.cli.main import main


def test_wf_bench_hands_its_options_to_the_benchmark(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--", "--help"])
    assert stopped.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: python -m bench.run") and "--quick" in usage and "--store-dir" in usage


def test_wf_bench_refuses_an_unknown_option(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--", "--fastest"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --fastest" in capsys.readouterr().err
