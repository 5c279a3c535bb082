"""Run programs on the system RTL from Python: Verilog generation (cached), job files, results.

One Verilator build serves every program on a given hardware configuration: the Verilog only
depends on the config and the memory sizes, and is regenerated only when they or the RTL sources
change (a key file beside it), so the simulator's own rebuild check sees an unchanged file.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import PimgptError

from .harness import write_if_changed
from .runner import (
    CocotbError,
    build_lock,
    call_in_simulator,
    check_cxx_opt,
    default_build_root,
    fst_support_missing,
    needs_build,
)
from .waves import remove_dumps

__all__ = ["SystemResult", "system_verilog", "write_job", "run_system", "prog_depth_for",
           "announce_build"]

TOPLEVEL = "pimgpt_system"
#: How the build notice names each simulator.
SIMULATOR_NAMES = {"verilator": "Verilator", "icarus": "Icarus Verilog"}


class SystemRunError(PimgptError):
    """The RTL run could not be set up (program too large, bad inputs...)."""


@dataclass
class SystemResult:
    """What one RTL run produced."""

    tokens: list
    capture: np.ndarray  # uint32: every word ARGMAX read, in order
    cycles: int
    status: dict
    traces: dict = field(default_factory=dict)  # channel -> int64 [n, 3] (cycle, cmd, fpi)
    build_s: float = 0.0
    test_s: float = 0.0
    verilog_s: float = 0.0
    build_dir: Path | None = None
    dispatch: np.ndarray | None = None  # int64 [n, 2]: (pc, cycle) of every dispatch


def prog_depth_for(n: int) -> int:
    """Program memory size for ``n`` instructions: a power of two, at least 8192."""
    depth = 8192
    while depth < n:
        depth *= 2
    return depth


def _rtl_key(hw: HwConfig, params: dict) -> str:
    import pimgpt.core
    import pimgpt.hdl

    h = hashlib.sha256()
    h.update(json.dumps(hw.raw, sort_keys=True, default=str).encode())
    h.update(json.dumps(params, sort_keys=True).encode())
    # Everything the generated Verilog is made from (the builds live in a cache shared by every
    # checkout, so the key, not the folder, tells versions apart).
    for pkg in (pimgpt.core, pimgpt.hdl):
        folder = Path(pkg.__file__).resolve().parent
        for src in sorted(folder.rglob("*.py")):
            h.update(str(src.relative_to(folder)).encode())
            h.update(src.read_bytes())
    # The vector unit's ROM as this process assembles it: the files on disk may have changed
    # since the routines were imported (an edit during a run), the ROM in memory is what the
    # Verilog gets.
    from pimgpt.core.vu.cost import microcode_for, pipeline_of

    mc = microcode_for(hw.asic.vector_lanes, pipeline_of(hw))
    h.update(repr((mc.words, sorted((int(op), pc) for op, pc in mc.entries.items()))).encode())
    return h.hexdigest()


def _verilog_params(prog_depth: int, out_depth: int = 256, cap_depth: int = 8192) -> dict:
    from pimgpt.hdl.system import SIMULATED

    return {"prog_depth": prog_depth, "out_depth": out_depth, "cap_depth": cap_depth,
            **SIMULATED}


def _verilog_current(outdir: Path, key: str) -> bool:
    """Whether ``outdir`` holds the Verilog that ``key`` (:func:`_rtl_key`) describes."""
    path, key_file = outdir / f"{TOPLEVEL}.v", outdir / "rtl.key"
    return path.exists() and key_file.exists() and key_file.read_text() == key


def system_verilog(hw: HwConfig, outdir, *, prog_depth: int = 8192, out_depth: int = 256,
                   cap_depth: int = 8192) -> tuple[Path, float]:
    """Write ``outdir/pimgpt_system.v`` (with the simulation models) unless it is up to date.

    Returns
    -------
    (Path, float)
        The file and the seconds spent generating it (0 when it was reused).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    params = _verilog_params(prog_depth, out_depth, cap_depth)
    key = _rtl_key(hw, params)
    path = outdir / f"{TOPLEVEL}.v"
    key_file = outdir / "rtl.key"
    if _verilog_current(outdir, key):
        return path, 0.0
    from amaranth.back import verilog

    from pimgpt.hdl.system import System

    t0 = time.perf_counter()
    top = System(hw, **params)
    write_if_changed(path, verilog.convert(top, name=TOPLEVEL, emit_src=False) + top.extra_verilog)
    key_file.write_text(key)
    return path, time.perf_counter() - t0


def write_job(path, program, image: np.ndarray, *, sp_read=(), max_cycles: int = 50_000_000,
              sp_init=None) -> Path:
    """Write a job file: the binary program, the DRAM image and what to read back."""
    from pimgpt.core.isa import HEADER, encode

    blob = encode(program) if not isinstance(program, (bytes, bytearray)) else bytes(program)
    words = np.frombuffer(blob, dtype=np.uint8, offset=HEADER.size).reshape(-1, 32)
    path = Path(path)
    np.savez(path, program=words, image=np.asarray(image, dtype=np.uint16),
             sp_read=np.asarray(list(sp_read), dtype=np.int64).reshape(-1, 2),
             max_cycles=np.int64(max_cycles),
             sp_init=np.asarray(sp_init if sp_init is not None else [], dtype=np.uint32))
    return path


def run_system(hw: HwConfig, program, image: np.ndarray, *, build_dir=None,
               simulator: str = "verilator", waves: str | None = None, p_idle: float = 0.0,
               seed: int = 0, sp_read=(), max_cycles: int = 50_000_000, sp_init=None,
               quiet: bool = True, cxx_opt: str | None = None) -> SystemResult:
    """Simulate ``program`` on the system RTL with ``image`` preloaded.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration (passed to the simulator process as data).
    program : list of Instr or bytes
    image : numpy.ndarray
        ``uint16 [channels, banks, rows, row_elems]`` DRAM contents (rows used).
    build_dir : path, optional
        Build directory (default ``system-<hw name>`` under
        :func:`~pimgpt.sim.cocotb_lib.runner.default_build_root`, the user cache); reused
        across runs and locked while one uses it.
    waves : {"vcd", "fst"}, optional
        Record waveforms in that format (in a build directory of its own, so that the traced
        build does not replace the fast one).
    sp_read : iterable of (addr, n)
        Scratchpad ranges to read back after the run.
    sp_init : array of uint32, optional
        Scratchpad words 0.. written through the host port before the run.
    cxx_opt : str, optional
        Verilator's C++ optimisation flag (:func:`~pimgpt.sim.cocotb_lib.runner.run_cocotb`);
        a build with one has a folder of its own (``-O0``: a third of the build time, for
        short programs).

    Returns
    -------
    SystemResult
    """
    from pimgpt.core.isa import decode
    from pimgpt.hdl.system import check_system_hw

    check_system_hw(hw)  # before anything is built or announced
    prog = decode(bytes(program)) if isinstance(program, (bytes, bytearray)) else list(program)
    depth = prog_depth_for(len(prog))
    d = hw.dram
    img = np.asarray(image, dtype=np.uint16)
    if img.ndim != 4 or img.shape[:2] != (d.channels, d.banks) or img.shape[3] != d.row_elems \
            or img.shape[2] > d.rows:
        raise SystemRunError(
            f"DRAM image shape {img.shape} does not fit hw {hw.name} "
            f"([{d.channels}, {d.banks}, <= {d.rows}, {d.row_elems}])")
    # Absolute: the cocotb test runs inside the simulator build directory, not here.
    build_dir = Path(build_dir) if build_dir else default_build_root() / f"system-{hw.name}"
    build_args = ["-O3", "--x-assign", "fast", "--x-initial", "fast"] \
        if simulator == "verilator" else []
    if waves not in (None, "vcd", "fst"):
        raise SystemRunError(f"waveform format {waves!r}: use vcd or fst")
    check_cxx_opt(cxx_opt, SystemRunError)  # before a folder is named after it
    if cxx_opt:  # "+" appears in no hardware name: no other config's default folder
        build_dir = build_dir.with_name(f"{build_dir.name}+cxx{cxx_opt}")
    if waves:
        build_dir = build_dir.with_name(f"{build_dir.name}-waves-{waves}")
        if simulator == "verilator" and waves == "fst":
            # Before the build folder exists: a build that cannot link its FST writer fails
            # only after minutes and leaves that folder behind.
            if why := fst_support_missing():
                raise SystemRunError(why)
            build_args.append("--trace-fst")
    build_dir = build_dir.resolve()
    with build_lock(build_dir):  # the build folder is in a cache shared by every process
        return _run_locked(hw, prog, img, build_dir, depth, simulator, waves, quiet,
                           build_args, p_idle, seed, sp_read, max_cycles, sp_init, cxx_opt)


def announce_build(hw: HwConfig, build_dir: Path, depth: int, simulator: str) -> bool:
    """Print one line to stderr when the run must generate and build the system first.

    That takes minutes (the Verilog, then the simulator's C++ or bytecode) and is silent
    otherwise. "building" when there is no usable simulator build yet; "updating" when there is
    one but the Verilog must be remade (pimgpt's sources changed: the simulator rebuilds only if
    the Verilog differs). A run that reuses the cached build prints nothing.

    Returns
    -------
    bool
        Whether a build was announced.
    """
    key = _rtl_key(hw, _verilog_params(depth))
    build = needs_build(simulator, build_dir, [build_dir / f"{TOPLEVEL}.v"], TOPLEVEL)
    if not build and _verilog_current(build_dir, key):
        return False
    from pimgpt.hdl.export import large_design

    name = SIMULATOR_NAMES.get(simulator, simulator)
    large = large_design(hw)
    if large:  # the default presets simulate every bank: far beyond "a few minutes"
        print(f"note: {large}; its simulator build takes longer still", file=sys.stderr,
              flush=True)
    if build:
        print(f"building the {name} model of {hw.name} in {build_dir} (first run on this "
              "hardware and RTL version: a few minutes; later runs reuse it)", file=sys.stderr,
              flush=True)
    else:  # a build exists, but pimgpt changed since: the Verilog is remade, maybe rebuilt
        print(f"updating the {name} model of {hw.name} in {build_dir} (pimgpt changed since it "
              "was built: up to a few minutes)", file=sys.stderr, flush=True)
    return True


def _run_locked(hw, prog, img, build_dir, depth, simulator, waves, quiet, build_args,
                p_idle, seed, sp_read, max_cycles, sp_init, cxx_opt=None) -> SystemResult:
    announce_build(hw, build_dir, depth, simulator)
    src, verilog_s = system_verilog(hw, build_dir, prog_depth=depth)
    job = write_job(build_dir / "job.npz", prog, img, sp_read=sp_read, max_cycles=max_cycles,
                    sp_init=sp_init)
    try:
        return _simulate(hw, build_dir, job, src, simulator, waves, quiet, build_args, p_idle,
                         seed, verilog_s, cxx_opt)
    except BaseException:
        # A failed or interrupted traced run leaves a partial dump (GBs) that nobody will take
        # out of the cache; the build beside it stays for the next run.
        if waves:
            remove_dumps(build_dir, waves)
        raise


def _simulate(hw, build_dir, job, src, simulator, waves, quiet, build_args, p_idle, seed,
              verilog_s, cxx_opt=None) -> SystemResult:
    """The simulation of :func:`_run_locked` and the checks of its result."""
    try:
        run = call_in_simulator(
            "pimgpt.sim.cocotb_lib.system_tb:run_job",
            {"job": str(job), "hw": hw.raw, "trace": str(build_dir / "trace.npz"),
             "p_idle": p_idle, "seed": seed},
            sources=[src], toplevel=TOPLEVEL, build_dir=build_dir, simulator=simulator,
            waves=bool(waves), quiet=quiet, build_args=build_args, cxx_opt=cxx_opt)
    except CocotbError as exc:
        log = build_dir / simulator / "build.log"
        if waves == "fst" and log.exists() and "lz4.h" in log.read_text(errors="replace"):
            raise SystemRunError(
                "this Verilator cannot write FST (its FST writer needs the lz4 headers: "
                "apt-get install liblz4-dev); use --waves FILE.vcd") from None
        raise exc
    res = run.result
    if res["violations"]:
        raise SystemRunError(f"DRAM protocol violation: {res['violations'][0]} (see {build_dir})")
    if res["error"]:
        raise SystemRunError(f"the front end stopped on a bad instruction (pc {res['pc']}); "
                             f"see {build_dir}")
    if res["dram_error"]:
        raise SystemRunError(f"a bank flagged a protocol or timing violation; see {build_dir}")
    return _result(res, run, verilog_s, build_dir)


def _result(res: dict, run, verilog_s, build_dir) -> SystemResult:
    traces = {}
    dispatch = None
    if Path(res["trace"]).exists():
        with np.load(res["trace"], allow_pickle=False) as z:
            traces = {int(k[2:]): z[k] for k in z.files if k.startswith("ch")}
            dispatch = z["dispatch"] if "dispatch" in z.files else None
    return SystemResult(
        tokens=res["tokens"], capture=np.array(res["capture"], dtype=np.uint32),
        cycles=res["cycles"], status=res, traces=traces, build_s=run.build_s, test_s=run.test_s,
        verilog_s=verilog_s, build_dir=build_dir, dispatch=dispatch)


#: Column commands: their sequence per channel does not depend on refresh timing.
COLUMN_COMMANDS = ("RD", "WR", "MAC", "MAC16", "WR16", "RDCP", "WRCP", "WRGB", "RDMAC16",
                   "WRMAC16")


def resolve_registers(program, tokens) -> list:
    """``program`` with every register-indexed ``RD_VEC`` turned into a literal one.

    The perf engine cannot know data: it reads ``R[vec]`` as set by ``SETR`` and takes 0 for an
    ``ARGMAX`` result. Given the tokens the run really produced (the results of the ``ARGMAX``
    chains in order: an ``ARGMAX`` and the ``ARGMAXC`` pieces continuing it, read only after the
    last), this gives it the vectors the hardware really fetched, so both issue the same
    commands.
    """
    from pimgpt.core.isa import FLAG_VEC_FROM_REG, Instr, Op

    regs = [0] * 16
    produced = iter(tokens)
    out = []
    for ins in program:
        if ins.op is Op.SETR:
            regs[ins["reg"] % 16] = ins["imm"]
        elif ins.op is Op.ARGMAX:
            regs[ins["reg"] % 16] = next(produced, 0)
        elif ins.op is Op.RD_VEC and ins.flags & FLAG_VEC_FROM_REG:
            args = dict(ins.args, vec=regs[ins["vec"] % 16])
            ins = Instr(Op.RD_VEC, args, 0)
        out.append(ins)
    return out


def compare_with_perf(hw: HwConfig, program, traces: dict, tokens=()) -> dict:
    """Compare the RTL's command traces with the perf engine's log of the same program.

    ``tokens``: the tokens the run generated (see :func:`resolve_registers`).

    Returns
    -------
    dict
        ``perf_cycles``; per channel the RTL and perf command counts; ``column_sequences_equal``
        (every channel issued the same column commands to the same banks in the same order:
        row activations and refreshes depend on the run's length and are compared by count only).
    """
    from pimgpt.core.dram import CMD, COMMANDS
    from pimgpt.sim.perf import simulate
    from pimgpt.sim.perf.commands import perf_commands

    res = simulate(resolve_registers(program, tokens), hw, log=True)
    perf = perf_commands(res.log, hw.dram.channels)
    cols = {CMD[c] for c in COLUMN_COMMANDS}
    out = {"perf_cycles": int(res.cycles), "channels": {}}
    equal = True
    for ch in range(hw.dram.channels):
        rtl = [tuple(int(v) for v in x) for x in traces.get(ch, [])]
        pf = [tuple(x) for x in perf[ch].tolist()]
        a = [(c, f) for _, c, f in rtl if c in cols]
        b = [(c, f) for _, c, f in pf if c in cols]
        equal &= a == b
        count = {}
        for name in COMMANDS:
            code = CMD[name]
            r = sum(1 for _, c, _ in rtl if c == code)
            p = sum(1 for _, c, _ in pf if c == code)
            if r or p:
                count[name] = (r, p)
        out["channels"][ch] = {"rtl_vs_perf": count, "column_commands": (len(a), len(b))}
    out["column_sequences_equal"] = bool(equal)
    return out
