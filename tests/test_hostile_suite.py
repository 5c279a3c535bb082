"""The suite's own switches: RTL tests that must not skip, and reproducible property tests."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import settings

SKIPPING = '''
import pytest

def test_needs_verilator():
    pytest.skip("verilator tests skipped: not installed here")

def test_needs_icarus():
    pytest.skip("icarus tests skipped: not installed here")

def test_other_skip():
    pytest.skip("something else")
'''


def _run(tmp_path, value):
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    # The suite's conftest.py (the hook under test) applies to files collected through it.
    conftest = os.path.join(os.path.dirname(__file__), "conftest.py")
    (tmp_path / "conftest.py").write_text(open(conftest, encoding="utf-8").read())
    env = {k: v for k, v in os.environ.items() if k != "PIMGPT_REQUIRE_RTL"}
    if value is not None:
        env["PIMGPT_REQUIRE_RTL"] = value
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)
    return proc.stdout.strip().splitlines()[-1]


def test_require_rtl_turns_simulator_skips_into_failures(tmp_path):
    assert _run(tmp_path, None).startswith("3 skipped")
    assert _run(tmp_path, "1").startswith("1 failed, 2 skipped")  # 1 means Verilator
    assert _run(tmp_path, "verilator,icarus").startswith("2 failed, 1 skipped")


def test_property_tests_are_derandomized_by_default():
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    assert settings.default.derandomize is (profile == "ci")
    assert settings.default.deadline is None
