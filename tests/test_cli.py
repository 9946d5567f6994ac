"""The command line reads orderings in every accepted spelling and gives the canonical one on."""

import contextlib
import io
import re
from types import SimpleNamespace

import pytest

from orderstudy import cli
from orderstudy.core.params import ParamsError
from orderstudy.core.plan import make_plan
from orderstudy.execution.runner import selected_orderings


def test_run_orderings_in_any_spelling_reach_the_runner_canonical(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "run_study", lambda params, orderings, log_output: seen.update(params=params, orderings=orderings))
    assert cli.main(["run", "p.yaml", "--orderings", "FPQ", "P-F", "Q→F", "F>Q", "base"]) == 0
    assert seen == {"params": "p.yaml", "orderings": ["F>P>Q", "P>F", "Q>F", "F>Q", "base"]}


def test_a_bad_ordering_on_the_command_line_is_a_usage_error_naming_the_spellings(monkeypatch, capsys):
    monkeypatch.setattr(cli, "run_study", lambda *a, **k: pytest.fail("ran with a bad ordering"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "p.yaml", "--orderings", "F", "FPX"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --orderings: ordering 'FPX': unknown operation 'X'" in err
    assert "(F>P>Q, F-P-Q, F→P→Q) or run together (FPQ), or 'base'" in err


def test_the_run_help_shows_orderings_a_shell_does_not_redirect():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    help_text = " ".join(out.getvalue().split())
    assert "e.g. base F P-F F-P-Q" in help_text and "FPQ" in help_text
    assert ">" not in re.sub(r'"[^"]*"', "", help_text)  # every > is inside quotes


def test_selected_orderings_match_the_plan_in_any_spelling():
    study = SimpleNamespace(plan=make_plan(["base", "P>F", "F>P>Q"]), params_file="s.yaml")
    assert selected_orderings(study, ["FPQ", "P-F"]) == ["P>F", "F>P>Q"]
    with pytest.raises(ParamsError, match=r"--orderings Q>F: not in the study's plan"):
        selected_orderings(study, ["Q-F"])
    with pytest.raises(ParamsError, match="--orderings: ordering 'FF': an operation is repeated"):
        selected_orderings(study, ["FF"])
