"""The whole PIM-GPT system: host interface + ASIC + PIM channels.

The host talks to the system through one command stream (:data:`HostOp`), one command per cycle:

========== ============================================================= ========================
op          effect                                                        ``addr``
========== ============================================================= ========================
WR_PROG     program memory word ``addr`` = ``data`` (256-bit instruction)  instruction index
WR_DRAM     DRAM column = ``data`` (preload of the weight image)           see :func:`dram_addr`
WR_SP       scratchpad word ``addr`` = ``data[0:32]``                      word address
RD_SP       ``rdata[0:32]`` = scratchpad word, ``rvalid`` one cycle later  word address
START       run the program from instruction 0                             --
RD_OUT      ``rdata[0:32]`` = output token ``addr``                        token index
RD_CAP      ``rdata[0:32]`` = captured logit word ``addr``                 word index
========== ============================================================= ========================

Status (``running``, ``done``, ``error``, ``dram_error``, ``n_out``, ``n_cap``, ``cycles``) is on
plain output ports. For monitors, the command bus of every channel is also registered into
``mon{c}_*`` ports (``mon{c}_count`` increments once per command, ``mon{c}_cycle`` is the issue
cycle counted from ``START``), so a testbench can wake up only when a command was issued; likewise
``mon_pc_count``/``mon_pc``/``mon_pc_cycle`` for every instruction the front end's PIM pointer
dispatches (and every barrier it passes), ``mon_apc_*`` likewise for its ASIC pointer.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.config import HwConfig

from .bank import ARRAY_VERILOG
from .channel import Channel, bank_verilog
from .controller import Asic, asic_clock_ratio
from .dram_timing import TimingTables
from .fp import check_int
from .pim_ops import check_engine_args
from .vector_unit import check_vector_unit_hw

__all__ = ["System", "HostOp", "host_cmd_layout", "dram_addr", "SIMULATED"]

#: How the RTL flow (``pimgpt run --backend rtl``) and ``pimgpt verilog system`` build the system:
#: every bank an instance of one shared module, so Verilator compiles a bank once, not per bank.
SIMULATED = {"bank_instances": True}


class HostOp(enum.Enum, shape=4):
    """Host command opcodes."""

    NOP = 0
    WR_PROG = 1
    WR_DRAM = 2
    WR_SP = 3
    RD_SP = 4
    START = 5
    RD_OUT = 6
    RD_CAP = 7


def host_cmd_layout() -> data.StructLayout:
    return data.StructLayout({"op": HostOp, "addr": 32, "data": 256})


def dram_addr(hw: HwConfig, ch: int, bank: int, row: int, col: int) -> int:
    """``addr`` of a WR_DRAM command: ``((ch * banks + bank) << word_bits) | row * cols + col``."""
    d = hw.dram
    word_bits = ceil_log2(d.rows * d.cols_per_row)
    return ((ch * d.banks + bank) << word_bits) | (row * d.cols_per_row + col)


def check_system_hw(hw: HwConfig) -> None:
    """Refuse a hardware configuration the RTL cannot build: the checks the blocks' constructors
    make, all at once and in moments, so that a run fails before it announces a build of
    minutes.

    Parameters
    ----------
    hw : HwConfig

    Raises
    ------
    ConfigError
        One line: the key and the fix (a second row buffer, clocks that do not divide, columns
        other than 16 elements, more accumulators than the MAC unit has, the vector unit's).
    """
    if not isinstance(hw, HwConfig):
        raise TypeError(f"hw must be a HwConfig, not {hw!r}")
    TimingTables(hw)  # one row buffer per bank, one command per tCK
    asic_clock_ratio(hw)
    check_engine_args(hw, 16)  # 16-element columns, the MAC unit's accumulators
    check_vector_unit_hw(hw)


class System(wiring.Component):
    """Host interface, ASIC and ``hw.dram.channels`` PIM channels.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration.
    prog_depth : int
        Program memory (instructions; a power of two).
    out_depth, cap_depth : int
        Output-token and logit-capture memory sizes.
    array_model : str
        DRAM array model of the banks (:class:`pimgpt.hdl.bank.Bank`): ``"verilog"`` for
        Verilator/Icarus, ``"amaranth"`` for Amaranth's simulator (small configs only).
    bank_instances : bool
        Instantiate every bank as one shared Verilog module (see
        :class:`pimgpt.hdl.channel.Channel`); :attr:`extra_verilog` then carries it.

    Attributes
    ----------
    host : In(stream.Signature(host_cmd_layout()))
        Host commands (always ready).
    rdata, rvalid : Out(256), Out(1)
        Read results, one cycle after a read command.
    running, done, error, dram_error, n_out, n_cap, cycles : Out
        Status; ``dram_error`` is set when a bank saw a protocol or timing violation.
    """

    def __init__(self, hw: HwConfig, *, prog_depth: int = 8192, out_depth: int = 256,
                 cap_depth: int = 8192, array_model: str = "verilog",
                 bank_instances: bool = False):
        check_system_hw(hw)
        self.hw = hw
        check_int("prog_depth", prog_depth, 16, 1 << 20)
        self.asic = Asic(hw, prog_depth=prog_depth, out_depth=out_depth, cap_depth=cap_depth)
        self.channels = [Channel(hw, array_model=array_model, bank_instances=bank_instances)
                         for _ in range(hw.dram.channels)]
        self._bank_instances = bank_instances
        d = hw.dram
        members = {
            "host": In(stream.Signature(host_cmd_layout())),
            "rdata": Out(256),
            "rvalid": Out(1),
            "running": Out(1),
            "done": Out(1),
            "error": Out(1),
            "dram_error": Out(1),
            "n_out": Out(len(self.asic.n_out)),
            "n_cap": Out(len(self.asic.n_cap)),
            "cycles": Out(48),
            "pc": Out(len(self.asic.pc)),
            "mon_pc_count": Out(32),
            "mon_pc": Out(len(self.asic.pc)),
            "mon_pc_cycle": Out(48),
            "mon_apc_count": Out(32),
            "mon_apc": Out(len(self.asic.pc)),
            "mon_apc_cycle": Out(48),
        }
        for c in range(d.channels):
            members.update({
                f"mon{c}_count": Out(32), f"mon{c}_cycle": Out(48), f"mon{c}_cmd": Out(5),
                f"mon{c}_fpi": Out(max(1, ceil_log2(d.banks))),
                f"mon{c}_row": Out(max(1, ceil_log2(d.rows))), f"mon{c}_col": Out(8),
            })
        super().__init__(members)

    @property
    def extra_verilog(self) -> str:
        """Verilog of the modules the design instantiates (written after its own)."""
        text = ARRAY_VERILOG
        if self._bank_instances:
            text = bank_verilog(self.hw) + text
        return text

    @property
    def prog_depth(self) -> int:
        return self.asic.prog_depth

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        d = hw.dram
        m.submodules.asic = asic = self.asic
        # Monitor stamps: the program's cycle count while it runs, then still counting: a refresh
        # sequence the schedulers began before the end finishes after it, and its commands must
        # not share the frozen end cycle.
        clock = Signal(48)
        with m.If(asic.start):
            m.d.sync += clock.eq(0)
        with m.Elif(asic.running | asic.done):
            m.d.sync += clock.eq(clock + 1)
        for c, ch in enumerate(self.channels):
            m.submodules[f"ch{c}"] = ch
            bus = getattr(asic, f"bus{c}")
            m.d.comb += [ch.cmd.eq(bus)]
            ret = getattr(asic, f"ret{c}")
            m.d.comb += [ret.rd_valid.eq(ch.rd.valid), ret.rd_data.eq(ch.rd.data),
                         ret.acc_valid.eq(ch.acc.valid), ret.acc_data.eq(ch.acc.data)]
            with m.If(bus.valid):
                m.d.sync += [
                    getattr(self, f"mon{c}_count").eq(getattr(self, f"mon{c}_count") + 1),
                    getattr(self, f"mon{c}_cycle").eq(clock),
                    getattr(self, f"mon{c}_cmd").eq(bus.p.cmd.as_value()),
                    getattr(self, f"mon{c}_fpi").eq(bus.p.fpi),
                    getattr(self, f"mon{c}_row").eq(bus.p.row),
                    getattr(self, f"mon{c}_col").eq(bus.p.col),
                ]

        # Dispatch monitors: the cycle each instruction leaves the front end (PIM pointer with
        # the barriers; ASIC pointer).
        for adv, pc, count, at, cyc in (
                (asic.advance, asic.pc, self.mon_pc_count, self.mon_pc, self.mon_pc_cycle),
                (asic.a_advance, asic.apc, self.mon_apc_count, self.mon_apc, self.mon_apc_cycle)):
            with m.If(adv):
                m.d.sync += [count.eq(count + 1), at.eq(pc), cyc.eq(asic.cycles)]

        cmd = self.host.payload
        go = self.host.valid
        m.d.comb += self.host.ready.eq(1)
        is_op = {op: go & (cmd.op == op) for op in HostOp}
        word_bits = ceil_log2(d.rows * d.cols_per_row)
        slot = cmd.addr[word_bits:]
        for c, ch in enumerate(self.channels):
            m.d.comb += [
                ch.load.en.eq(is_op[HostOp.WR_DRAM] & (slot // d.banks == c)),
                ch.load.bank.eq(slot % d.banks), ch.load.addr.eq(cmd.addr[:word_bits]),
                ch.load.data.eq(cmd.data),
            ]
        m.d.comb += [
            asic.host_prog.en.eq(is_op[HostOp.WR_PROG]), asic.host_prog.addr.eq(cmd.addr),
            asic.host_prog.data.eq(cmd.data),
            asic.host_sp_wr.en.eq(is_op[HostOp.WR_SP]), asic.host_sp_wr.addr.eq(cmd.addr),
            asic.host_sp_wr.data.eq(cmd.data[:32]),
            asic.host_sp_rd.en.eq(is_op[HostOp.RD_SP]), asic.host_sp_rd.addr.eq(cmd.addr),
            asic.host_out_addr.eq(cmd.addr), asic.host_cap_addr.eq(cmd.addr),
            asic.start.eq(is_op[HostOp.START]),
        ]
        which = Signal(HostOp)
        m.d.sync += [self.rvalid.eq(is_op[HostOp.RD_SP] | is_op[HostOp.RD_OUT] |
                                    is_op[HostOp.RD_CAP]), which.eq(cmd.op)]
        with m.Switch(which):
            with m.Case(HostOp.RD_SP):
                m.d.comb += self.rdata.eq(asic.host_sp_rd.data)
            with m.Case(HostOp.RD_OUT):
                m.d.comb += self.rdata.eq(asic.host_out_data)
            with m.Case(HostOp.RD_CAP):
                m.d.comb += self.rdata.eq(asic.host_cap_data)
        m.d.comb += [
            self.running.eq(asic.running), self.done.eq(asic.done), self.error.eq(asic.error),
            self.dram_error.eq(Cat(*[ch.error for ch in self.channels]).any()),
            self.n_out.eq(asic.n_out), self.n_cap.eq(asic.n_cap), self.cycles.eq(asic.cycles),
            self.pc.eq(asic.pc),
        ]
        return m
