"""One PIM channel: its banks, the global buffer (GB) and the command decode.

Every command of the command bus goes to every bank with ``sel`` set for the banks in the
command's footprint (one bank, one bank group or all). The channel itself

* keeps the global buffer (``gb_elems / 16`` columns of 256 bits): ``WRGB`` writes it from the
  command data, ``RDCP`` copies the selected bank's column into it (one cycle after the command),
  ``MAC``/``MAC16``/``WRCP`` read column ``gbcol`` for the banks (one cycle after the command);
* returns ``RD`` data on ``rd`` at ``t + done_after(RD)`` (``nCL + nIO``: the bus read latency of
  the standard) through a delay line;
* returns ``RDMAC16`` data on ``acc`` when the banks capture their accumulators (``t + 1 +
  mac.latency`` while MAC columns may be in flight, else ``t + 1``; see ``docs/rtl.md``), word
  ``j`` of a burst of bank group ``g`` being bank ``8g + j``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.config import HwConfig

from .bank import ACCS_PER_BURST, Bank, dram_cmd_layout
from .dram_timing import BANK, BANKGROUP, DramCmd, TimingTables

__all__ = ["Channel", "BANK_MODULE", "bank_verilog"]

#: Verilog module name of a bank when the channel instantiates banks (``bank_instances``).
BANK_MODULE = "pimgpt_bank"


def bank_verilog(hw: HwConfig, *, mac_add_latency: int = 1) -> str:
    """Verilog of the :data:`BANK_MODULE` that ``Channel(bank_instances=True)`` instantiates."""
    from amaranth.back import verilog

    bank = Bank(hw, 0, mac_add_latency=mac_add_latency, array_model="verilog")
    # Guarded like the array model: the channel and the system files both carry the module, so
    # that they can be compiled together (for the same hardware: the first definition is kept).
    guard = f"{BANK_MODULE.upper()}_V"
    return (f"`ifndef {guard}\n`define {guard}\n"
            + verilog.convert(bank, name=BANK_MODULE, emit_src=False) + "`endif\n")


def _instance(bank: Bank) -> Instance:
    """An instance of :data:`BANK_MODULE` wired to ``bank``'s port signals (which the channel
    drives and reads exactly as it would an elaborated bank)."""
    bank._MustUse__silence = True  # only its port signals are used (Amaranth's must-use check)
    ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
    for name, member in bank.signature.members.items():
        sig = getattr(bank, name)
        value = sig.as_value() if hasattr(sig, "as_value") else sig
        ports[("i_" if member.flow == In else "o_") + name] = value
    return Instance(BANK_MODULE, **ports)


class Channel(wiring.Component):
    """A PIM channel of ``hw.dram.banks`` banks.

    Parameters
    ----------
    hw : HwConfig
        Hardware configuration.
    mac_add_latency, array_model
        Passed to every :class:`Bank`.
    bank_instances : bool
        Instantiate the banks as the one Verilog module :data:`BANK_MODULE` (see
        :func:`bank_verilog`) instead of elaborating each bank: the same hardware, generated and
        compiled once instead of once per bank (Verilator/Icarus only).

    Attributes
    ----------
    cmd : In(StructLayout)
        The command bus: ``valid`` and ``p`` (:func:`pimgpt.hdl.bank.dram_cmd_layout`).
    rd : Out(StructLayout)
        ``valid``/``data``: RD column data.
    acc : Out(StructLayout)
        ``valid``/``data``: RDMAC16 burst of accumulators (fp32, 8 per burst).
    load : In(StructLayout)
        Preload: ``en``, ``bank``, ``addr`` (row * columns + col), ``data``.
    error : Out(1)
        Sticky: some bank saw a protocol or timing violation.
    """

    def __init__(self, hw: HwConfig, *, mac_add_latency: int = 1, array_model: str = "verilog",
                 bank_instances: bool = False):
        if not isinstance(hw, HwConfig):
            raise TypeError(f"hw must be a HwConfig, not {hw!r}")
        self.hw = hw
        self.tables = TimingTables(hw)
        self._mac_add_latency = mac_add_latency
        self._array_model = array_model
        self._bank_instances = bool(bank_instances)
        d = hw.dram
        width = 8 * d.column_bytes
        super().__init__({
            "cmd": In(data.StructLayout({"valid": 1, "p": dram_cmd_layout(hw)})),
            "rd": Out(data.StructLayout({"valid": 1, "data": width})),
            "acc": Out(data.StructLayout({"valid": 1, "data": width})),
            "load": In(data.StructLayout({
                "en": 1, "bank": max(1, ceil_log2(d.banks)),
                "addr": max(1, ceil_log2(d.rows * d.cols_per_row)), "data": width})),
            "error": Out(1),
        })

    @property
    def acc_latency(self) -> int:
        """Cycles from RDMAC16 to ``acc.valid`` while MAC columns may be in flight (1 when the
        MAC pipelines are empty)."""
        return 1 + Bank.mac_latency_for(self.hw.dram.col_elems, self._mac_add_latency)

    @property
    def rd_latency(self) -> int:
        """Cycles from RD to ``rd.valid``."""
        return max(1, self.tables.done_after[DramCmd.RD.value])

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        t = self.tables
        nb, bpg = d.banks, d.banks // d.bank_groups
        c = self.cmd.p
        width = 8 * d.column_bytes

        fp = Signal(2)  # footprint level of the command on the bus
        with m.Switch(c.cmd):
            for cmd in DramCmd:
                with m.Case(cmd):
                    m.d.comb += fp.eq(t.footprint(cmd.value))

        m.submodules.gb = gb = Memory(shape=width, depth=d.gb_elems // d.col_elems, init=[])
        gb_rd = gb.read_port()
        gb_wr = gb.write_port()
        m.d.comb += [gb_rd.addr.eq(c.gbcol), gb_rd.en.eq(1)]

        banks = []
        for b in range(nb):
            bank = Bank(self.hw, b, mac_add_latency=self._mac_add_latency,
                        array_model=self._array_model)
            if self._bank_instances:
                m.submodules[f"bank{b}"] = _instance(bank)
            else:
                m.submodules[f"bank{b}"] = bank
            m.d.comb += bank.id.eq(b)
            banks.append(bank)
            sel = ((fp == BANK) & (c.fpi == b)) | ((fp == BANKGROUP) & (c.fpi == b // bpg)) | \
                (fp > BANKGROUP)
            m.d.comb += [
                bank.cmd.valid.eq(self.cmd.valid),
                bank.cmd.sel.eq(sel),
                bank.cmd.p.eq(c),
                bank.gb.eq(gb_rd.data),
                bank.load.en.eq(self.load.en & (self.load.bank == b)),
                bank.load.addr.eq(self.load.addr),
                bank.load.data.eq(self.load.data),
            ]
        m.d.comb += self.error.eq(Cat(*[b.error for b in banks]).any())

        # The bank read one cycle ago (RD and RDCP address one bank: fpi).
        fpi_q = Signal.like(c.fpi)
        rd_q = Signal()
        rdcp_q = Signal()
        gbcol_q = Signal.like(c.gbcol)
        m.d.sync += [fpi_q.eq(c.fpi), gbcol_q.eq(c.gbcol),
                     rd_q.eq(self.cmd.valid & (c.cmd == DramCmd.RD)),
                     rdcp_q.eq(self.cmd.valid & (c.cmd == DramCmd.RDCP))]
        bank_data = Signal(width)
        with m.Switch(fpi_q):
            for b, bank in enumerate(banks):
                with m.Case(b):
                    m.d.comb += bank_data.eq(bank.rdata)

        with m.If(rdcp_q):
            m.d.comb += [gb_wr.addr.eq(gbcol_q), gb_wr.data.eq(bank_data), gb_wr.en.eq(1)]
        with m.Elif(self.cmd.valid & (c.cmd == DramCmd.WRGB)):
            m.d.comb += [gb_wr.addr.eq(c.gbcol), gb_wr.data.eq(c.data), gb_wr.en.eq(1)]

        # RD data: delay line from t+1 to t + rd_latency.
        valid, dat = rd_q, bank_data
        for stage in range(self.rd_latency - 1):
            v = Signal(name=f"rd_v{stage}")
            x = Signal(width, name=f"rd_d{stage}")
            m.d.sync += [v.eq(valid), x.eq(dat)]
            valid, dat = v, x
        m.d.comb += [self.rd.valid.eq(valid), self.rd.data.eq(dat)]

        # RDMAC16: the banks of the burst capture together; word j is bank 8g + j of the group g
        # the burst names (only the capturing banks have acc_valid).
        acc_words = []
        for j in range(ACCS_PER_BURST):
            word = 0
            for b in range(j, nb, ACCS_PER_BURST):
                word = word | (banks[b].acc & banks[b].acc_valid.replicate(32))
            acc_words.append(word)
        m.d.comb += [self.acc.valid.eq(Cat(*[b.acc_valid for b in banks]).any()),
                     self.acc.data.eq(Cat(*acc_words))]
        return m
