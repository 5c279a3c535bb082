"""The `pimgpt` command: every subcommand has --help, errors are one line with exit status 1."""

import subprocess
import sys

import pytest

from pimgpt.cli import HANDLERS, build_parser, main


def test_every_handler_has_a_subparser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(HANDLERS)


@pytest.mark.parametrize("command", sorted(HANDLERS))
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: pimgpt {command}")


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "pimgpt.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in HANDLERS:
        assert command in out


def test_user_error_is_one_line_and_exit_1(capsys):
    assert main(["run", "--model", "no-such-model"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("pimgpt run: error: unknown model 'no-such-model'")


def test_bad_hw_yaml(tmp_path, capsys):
    bad = tmp_path / "hw.yaml"
    bad.write_text("dram: [\n")
    assert main(["compile", "--model", "tiny", "--hw", str(bad), "-o", str(tmp_path / "o")]) == 1
    assert "malformed YAML at line 2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
