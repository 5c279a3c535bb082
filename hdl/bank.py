"""One PIM DRAM bank: array, row buffer, MAC unit with accumulator file, per-bank timing counters.

The bank sees every command of its channel's command bus (``cmd``), with ``sel`` set when the
command's footprint contains this bank. What it does (``t`` = issue cycle):

* ``ACT*``: open ``row`` in the row buffer; ``PRE*``: close it. The row buffer is modelled as the
  open row's address: the array is a simulation memory of ``rows x columns`` 256-bit words and a
  column access reads or writes the open row directly, which is equivalent because every write
  goes through to the array.
* ``RD``/``RDCP``: the column is on ``rdata`` at ``t + 1`` (the channel delays ``RD`` data to the
  bus read latency and writes ``RDCP`` data into its global buffer).
* ``WR``/``WR16``: write the command's data into the lanes set in ``mask``; ``WRCP``: write the
  channel's global-buffer column (on ``gb`` at ``t + 1``) into the column.
* ``MAC``/``MAC16``: the column (at ``t + 1``) and the GB column (``gb`` at ``t + 1``) enter the
  MAC unit (:class:`pimgpt.hdl.mac.MAC`), into accumulator ``acc`` of the bank's
  ``dram.accumulators`` (the MAC unit's accumulator file).
* ``RDMAC16`` / ``WRMAC16``: a burst of 8 fp32 words, one accumulator of up to 8 banks:
  ``col`` (:func:`acc_burst_col`) names the accumulator ``a`` and the group ``g`` of 8 banks,
  ``mask`` the words; word ``w`` is bank ``8 g + w``. ``RDMAC16``: the banks capture accumulator
  ``a`` and clear it. The capture travels through a delay line as long as the MAC pipeline, so it
  sees exactly the MAC columns issued before it, and ``acc`` / ``acc_valid`` show it ``1 +
  mac.latency`` cycles after issue -- or 1 cycle after issue when the channel's MAC pipelines
  are empty (no MAC/MAC16/WRMAC16 in the last ``1 + mac.latency`` cycles, no capture on its
  way). "Clear" is kept as a flag per
  accumulator: the next column into it enters the MAC unit with ``first`` set, which restarts the
  accumulation at +0 exactly as the ISA's "accumulators return to +0" says.
* ``WRMAC16``: the banks load their word of the command data as the bias of accumulator ``a``.
  The MAC unit has no load port, so the bias enters as a column with ``first`` set whose products
  are the bias split into three bf16 pieces times 1.0; the adder tree sums them exactly, so the
  accumulator becomes the bias bit for bit whenever ``|bias| >= 2**-103`` or ``bias = +0`` (smaller
  magnitudes lose bits below the bf16 range to DAZ, and ``-0`` becomes ``+0``). The compiler never
  emits ``WR_BIAS``; see ``docs/rtl.md``.

Per-bank timing counters check, device side, the bank-scope rows of the DRAM standard (``nRC``,
``nRAS``, ``nRP``, ``nRCD*``, ``nRTP``, write recovery) for every command that touches the bank;
a violation, an ``ACT`` to an open bank or a column command to a closed bank sets the sticky
``error`` output.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core import dram as S
from pimgpt.core.config import ConfigError, HwConfig

from .dram_timing import DramCmd
from .fp import check_int
from .mac import MAC, MAX_ACCUMULATORS

__all__ = ["Bank", "dram_cmd_layout", "ACCS_PER_BURST", "ARRAY_MODULE", "ARRAY_VERILOG",
           "acc_bits", "acc_burst_col", "acc_transfer_bursts", "check_acc_transfers"]

#: Name and Verilog source of the DRAM array's simulation model. Amaranth keeps every initial
#: bit of a ``Memory`` as an object, which makes a 4-Mbit bank array take seconds and hundreds of
#: MB to elaborate; the array is therefore this small behavioural model (zero-initialised, read
#: data one cycle after the address, old data on a same-cycle write, 16-bit lane write enables),
#: instantiated by the bank and emitted beside the generated Verilog.
ARRAY_MODULE = "pimgpt_dram_array"
ARRAY_VERILOG = """\
// Simulation model of one PIM bank's DRAM array (pimgpt, hdl/bank.py). Every exported file that
// instantiates it carries a copy; the guard lets several such files be compiled together.
`ifndef PIMGPT_DRAM_ARRAY_V
`define PIMGPT_DRAM_ARRAY_V
module pimgpt_dram_array #(parameter WIDTH = 256, DEPTH = 16384, AW = 14, LANES = 16) (
    input  wire             clk,
    input  wire [AW-1:0]    raddr,
    output reg  [WIDTH-1:0] rdata,
    input  wire [AW-1:0]    waddr,
    input  wire [WIDTH-1:0] wdata,
    input  wire [LANES-1:0] wen
);
    localparam LW = WIDTH / LANES;
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    integer i;
    initial begin
        for (i = 0; i < DEPTH; i = i + 1) mem[i] = {WIDTH{1'b0}};
        rdata = {WIDTH{1'b0}};
    end
    always @(posedge clk) begin
        rdata <= mem[raddr];
        for (i = 0; i < LANES; i = i + 1)
            if (wen[i]) mem[waddr][i*LW +: LW] <= wdata[i*LW +: LW];
    end
endmodule
`endif
"""

#: fp32 accumulators per 32-byte RDMAC16/WRMAC16 burst.
ACCS_PER_BURST = 8

#: Per-bank timing classes and the commands that fall into each (all-bank forms included).
_BANK_CLASSES = {
    "ACT": ("ACT", "ACT4", "ACT16"), "PRE": ("PRE", "PRE4", "PREA"), "RD": ("RD",),
    "WR": ("WR", "WR16"), "MAC": ("MAC", "MAC16"), "RDCP": ("RDCP",), "WRCP": ("WRCP",),
}
_CLASS_OF = {c: k for k, cs in _BANK_CLASSES.items() for c in cs}


def acc_bits(hw: HwConfig) -> int:
    """Width of an accumulator index (``dram.accumulators`` per bank; 0 bits for one)."""
    return ceil_log2(hw.dram.accumulators)


def _burst_bits(hw: HwConfig) -> int:
    return ceil_log2(-(-hw.dram.banks // ACCS_PER_BURST))


def acc_burst_col(hw: HwConfig, acc, group=0):
    """``col`` field of an RDMAC16/WRMAC16 moving accumulator ``acc`` of banks ``8 * group ..
    8 * group + 7``: ``acc * 2**ceil(log2(ceil(B / 8))) + group``. Integers give an integer,
    hardware values a value."""
    gb = _burst_bits(hw)
    if isinstance(acc, int) and isinstance(group, int):
        return acc << gb | group
    return Cat(Value.cast(group)[:gb], Value.cast(acc)[:acc_bits(hw)])


def acc_transfer_bursts(hw: HwConfig, nacc: int) -> list[tuple[int, int, int]]:
    """The bursts that move ``nacc`` accumulators of every bank of a channel (RD_MAC/WR_BIAS),
    accumulator-major as the DRAM standard counts them (``pimgpt.core.dram.acc_bursts``):
    ``(accumulator offset, bank group, words)``; word ``w`` of group ``g`` is bank ``8 g + w``."""
    B = hw.dram.banks
    groups = -(-B // ACCS_PER_BURST)
    return [(a, g, min(ACCS_PER_BURST, B - ACCS_PER_BURST * g))
            for a in range(nacc) for g in range(groups)]


def check_acc_transfers(hw: HwConfig) -> None:
    """The MAC unit's accumulator file must hold ``dram.accumulators``."""
    if hw.dram.accumulators > MAX_ACCUMULATORS:
        raise ConfigError(f"{hw.name}: the RTL MAC unit has at most {MAX_ACCUMULATORS} "
                         f"accumulators, not dram.accumulators {hw.dram.accumulators}")


def dram_cmd_layout(hw: HwConfig) -> data.StructLayout:
    """Payload of a channel's command bus.

    ``cmd`` (:class:`DramCmd`), ``fpi`` (footprint index: bank, bank group or 0), ``row`` (ACT),
    ``col`` (column; :func:`acc_burst_col` of RDMAC16/WRMAC16), ``gbcol`` (global-buffer column),
    ``mask`` (one bit per bf16 lane of a write), ``data`` (write data: 16 bf16, or 8 fp32 for
    WRMAC16), ``acc`` (accumulator of MAC/MAC16; :func:`acc_bits` wide).
    """
    d = hw.dram
    acc_cols = 1 << (_burst_bits(hw) + acc_bits(hw))
    return data.StructLayout({
        "cmd": DramCmd,
        "fpi": max(1, ceil_log2(d.banks)),
        "row": max(1, ceil_log2(d.rows)),
        "col": max(1, ceil_log2(max(d.cols_per_row, acc_cols))),
        "gbcol": max(1, ceil_log2(d.gb_elems // d.col_elems)),
        "mask": d.col_elems,
        "data": 8 * d.column_bytes,
        "acc": acc_bits(hw),
    })


class _Port:
    """Address/data/enable signals of one array port."""

    def __init__(self, aw: int, width: int, lanes: int = 0):
        self.addr = Signal(aw)
        self.data = Signal(width)
        self.en = Signal(lanes) if lanes else None


def bank_timing_rows(hw: HwConfig) -> dict:
    """``{(prev_class, next_class): latency}`` of the standard's bank-scope rows."""
    std = S.build_standard(hw)
    out: dict = {}
    for row, lat in std.rows:
        if row.scope not in ("bank", "subarray") or row.window:
            continue
        for p in S.expand(row.preceding):
            for f in S.expand(row.following):
                if p in _CLASS_OF and f in _CLASS_OF and lat > 0:
                    key = (_CLASS_OF[p], _CLASS_OF[f])
                    out[key] = max(out.get(key, 0), lat)
    return out


class Bank(wiring.Component):
    """A PIM bank.

    Parameters
    ----------
    hw : HwConfig
        Geometry (rows, columns per row) and timing.
    index : int
        Default bank number for the ``id`` input (the channel drives ``id``; a bank's logic does
        not depend on its number, so every bank is the same Verilog module).
    mac_add_latency : int
        Pipeline depth of the MAC unit's tree adders (1..3).
    array_model : str
        ``"verilog"`` (default): the array is an instance of :data:`ARRAY_MODULE` (Verilator,
        Icarus); ``"amaranth"``: an Amaranth ``Memory`` (for Amaranth's simulator; slow to
        elaborate for large arrays).

    Attributes
    ----------
    cmd : In(StructLayout)
        ``valid``, ``sel`` and the command payload (:func:`dram_cmd_layout`).
    gb : In(256)
        The channel's global-buffer column, one cycle after a MAC/WRCP command.
    rdata : Out(256)
        Column read by RD/RDCP (one cycle after the command).
    acc, acc_valid : Out(32), Out(1)
        Accumulator captured by RDMAC16 (the one its ``col`` names).
    load : In(StructLayout)
        Preload port: ``en``, ``addr`` (``row * columns + col``), ``data``.
    id : In
        This bank's number in its channel (selects its RDMAC16/WRMAC16 burst word).
    is_open, open_row, error : Out
        Row-buffer state and the sticky protocol-error flag.
    """

    def __init__(self, hw: HwConfig, index: int = 0, *, mac_add_latency: int = 1,
                 array_model: str = "verilog"):
        if not isinstance(hw, HwConfig):
            raise TypeError(f"hw must be a HwConfig, not {hw!r}")
        self.hw = hw
        self._index = check_int("index", index, 0, hw.dram.banks - 1)
        self._mac_add_latency = check_int("mac_add_latency", mac_add_latency, 1, 3)
        if array_model not in ("verilog", "amaranth"):
            raise ValueError(f"array_model must be 'verilog' or 'amaranth', not {array_model!r}")
        self.array_model = array_model
        d = hw.dram
        self.cols = d.cols_per_row
        self.depth = d.rows * d.cols_per_row
        self.cmd_layout = dram_cmd_layout(hw)
        check_acc_transfers(hw)
        self.mac_latency = self.mac_latency_for(d.col_elems, mac_add_latency)
        super().__init__({
            "cmd": In(data.StructLayout({"valid": 1, "sel": 1, "p": self.cmd_layout})),
            "gb": In(8 * d.column_bytes),
            "rdata": Out(8 * d.column_bytes),
            "acc": Out(32),
            "acc_valid": Out(1),
            "load": In(data.StructLayout({"en": 1, "addr": max(1, ceil_log2(self.depth)),
                                          "data": 8 * d.column_bytes})),
            "id": In(max(1, ceil_log2(d.banks)), init=index),
            "is_open": Out(1),
            "open_row": Out(max(1, ceil_log2(d.rows))),
            "error": Out(1),
        })

    @staticmethod
    def mac_latency_for(lanes: int, add_latency: int) -> int:
        """:attr:`pimgpt.hdl.mac.MAC.latency` of a MAC unit (checked when the bank elaborates)."""
        return 1 + (lanes.bit_length() - 1) * add_latency + 1

    @property
    def capture_latency(self) -> int:
        """Cycles from an RDMAC16 command to ``acc_valid`` while MAC columns may be in flight
        (1 when the channel's MAC pipelines are empty)."""
        return 1 + self.mac_latency

    def elaborate(self, platform):
        m = Module()
        d = self.hw.dram
        lanes = d.col_elems
        c = self.cmd.p
        go = self.cmd.valid & self.cmd.sel
        op = c.cmd

        def is_(*names):
            return go & Cat(*[op == DramCmd[n] for n in names]).any()

        width, aw = 8 * d.column_bytes, max(1, ceil_log2(self.depth))
        rp = _Port(aw, width)
        wp = _Port(aw, width, lanes)
        if self.array_model == "amaranth":
            m.submodules.array = array = Memory(shape=width, depth=self.depth, init=[])
            mrp = array.read_port()
            mwp = array.write_port(granularity=16)
            m.d.comb += [mrp.addr.eq(rp.addr), mrp.en.eq(1), rp.data.eq(mrp.data),
                         mwp.addr.eq(wp.addr), mwp.data.eq(wp.data), mwp.en.eq(wp.en)]
        else:
            m.submodules.array = Instance(
                ARRAY_MODULE, p_WIDTH=width, p_DEPTH=self.depth, p_AW=aw, p_LANES=lanes,
                i_clk=ClockSignal(), i_raddr=rp.addr, o_rdata=rp.data, i_waddr=wp.addr,
                i_wdata=wp.data, i_wen=wp.en)
        col_addr = (self.open_row * self.cols + c.col)[:aw]
        m.d.comb += [rp.addr.eq(col_addr), self.rdata.eq(rp.data)]

        # ---- row buffer ---------------------------------------------------------------------
        with m.If(is_("ACT", "ACT4", "ACT16")):
            m.d.sync += [self.is_open.eq(1), self.open_row.eq(c.row)]
        with m.If(is_("PRE", "PRE4", "PREA")):
            m.d.sync += self.is_open.eq(0)

        # ---- writes: WR/WR16 now, WRCP one cycle later (GB data) ----------------------------
        wrcp_q = Signal()
        wrcp_addr = Signal.like(wp.addr)
        m.d.sync += [wrcp_q.eq(is_("WRCP")), wrcp_addr.eq(col_addr)]
        with m.If(self.load.en):
            m.d.comb += [wp.addr.eq(self.load.addr), wp.data.eq(self.load.data),
                         wp.en.eq(Const(-1, lanes))]
        with m.Elif(wrcp_q):
            m.d.comb += [wp.addr.eq(wrcp_addr), wp.data.eq(self.gb), wp.en.eq(Const(-1, lanes))]
        with m.Elif(is_("WR", "WR16")):
            m.d.comb += [wp.addr.eq(col_addr), wp.data.eq(c.data), wp.en.eq(c.mask)]

        self._mac_unit(m, c, is_, rp.data)

        # ---- device-side timing counters and state checks -----------------------------------
        rows = bank_timing_rows(self.hw)
        width = max(lat for lat in rows.values()).bit_length() + 1
        counters = {f: Signal(width, name=f"ready_{f.lower()}") for f in _BANK_CLASSES}
        issued = {k: is_(*names) for k, names in _BANK_CLASSES.items()}
        violation = Signal()
        checks = [issued[f] & (counters[f] != 0) for f in _BANK_CLASSES]
        checks.append(issued["ACT"] & self.is_open)
        checks += [issued[k] & ~self.is_open for k in ("RD", "WR", "MAC", "RDCP", "WRCP")]
        m.d.comb += violation.eq(Cat(*checks).any())
        for f, cnt in counters.items():
            nxt = Mux(cnt != 0, cnt - 1, 0)
            for p in _BANK_CLASSES:
                lat = rows.get((p, f), 0)
                if lat > 1:
                    nxt = Mux(issued[p] & (nxt < lat - 1), lat - 1, nxt)
            m.d.sync += cnt.eq(nxt)
        with m.If(violation):
            m.d.sync += self.error.eq(1)
        return m


    def _mac_unit(self, m, c, is_, column):
        """The MAC unit with its accumulator file; RDMAC16 capture and WRMAC16 bias."""
        hw, d = self.hw, self.hw.dram
        lanes = d.col_elems
        m.submodules.mac = mac = MAC(lanes=lanes, add_latency=self._mac_add_latency,
                                     accumulators=d.accumulators)
        assert mac.latency == self.mac_latency, "MAC latency formula out of step with hdl/mac.py"
        # RDMAC16/WRMAC16: ``col`` names the accumulator and the group of 8 banks, ``mask`` the
        # words of the burst; this bank's word is ``id % 8`` of group ``id // 8``.
        assert ACCS_PER_BURST == 8
        lgb, ab = _burst_bits(hw), acc_bits(hw)
        cmd_acc = c.col[lgb:lgb + ab]
        word = self.id[:3]
        mine = c.mask.bit_select(word, 1)
        if lgb:
            mine &= c.col[:lgb] == (self.id >> 3)[:lgb]
        wrmac = is_("WRMAC16") & mine
        rdmac = is_("RDMAC16") & mine
        mac_q = Signal()  # a column enters the MAC unit (one cycle after the command)
        bias_q = Signal()
        in_acc = Signal(ab)  # its accumulator
        bias = Signal(32)
        m.d.sync += [mac_q.eq(is_("MAC", "MAC16")), bias_q.eq(wrmac),
                     in_acc.eq(Mux(is_("WRMAC16"), cmd_acc, c.acc)),
                     bias.eq(c.data.word_select(word, 32))]
        # Bias as three bf16 pieces (truncation, so all share the bias's sign): hi + mid + lo.
        hi = bias[16:32]
        r1 = Signal(32)
        r2 = Signal(32)
        m.d.comb += [r1.eq(_f32_minus_bf16(bias, hi))]
        mid = r1[16:32]
        m.d.comb += r2.eq(_f32_minus_bf16(r1, mid))
        lo = r2[16:32]
        one = 0x3F80
        inj_a = Cat(hi, mid, lo, Const(0, 16 * (lanes - 3)))
        inj_b = Cat(Const(one, 16), Const(one, 16), Const(one, 16), Const(0, 16 * (lanes - 3)))
        # cleared_in[a]: the next column into accumulator a restarts it at +0 (set by its RDMAC16).
        all_acc = (1 << d.accumulators) - 1
        cleared_in = Signal(d.accumulators, init=all_acc)
        m.d.comb += [
            mac.i.valid.eq(mac_q | bias_q),
            mac.i.payload.a.eq(Mux(bias_q, inj_a, column)),
            mac.i.payload.b.eq(Mux(bias_q, inj_b, self.gb)),
            mac.i.payload.first.eq(cleared_in.bit_select(in_acc, 1) | bias_q),
            mac.i.payload.last.eq(0),
            mac.i.payload.acc.eq(in_acc),
        ]
        with m.If(mac_q | bias_q):
            m.d.sync += cleared_in.bit_select(in_acc, 1).eq(0)
        with m.If(rdmac):
            m.d.sync += cleared_in.bit_select(cmd_acc, 1).eq(1)
        self._capture(m, mac, mac_q | bias_q, in_acc, rdmac, cmd_acc)

    def _capture(self, m, mac, col_in, col_acc, rdmac, rd_acc):
        """RDMAC16 capture: delay lines beside the MAC pipeline (a column landed / a capture
        marker, with their accumulators). The column line enters one cycle after the command
        (with the MAC input), the capture line at issue: both reach the end when the MAC unit's
        accumulators show every earlier column.

        When no MAC, MAC16 or WRMAC16 reached the channel's bus in the last ``capture_latency``
        cycles (every column has landed) and no capture is on its way, the marker skips the
        line: the accumulator is read one cycle after the command. Every bank sees the whole
        bus, so the banks of a burst decide alike."""
        d = self.hw.dram
        ab = acc_bits(self.hw)
        n = self.capture_latency
        col_v = [Signal(name=f"col_v{k}") for k in range(n)]
        col_a = [Signal(ab, name=f"col_a{k}") for k in range(n)]
        cap_v = [Signal(name=f"cap_v{k}") for k in range(n)]
        cap_a = [Signal(ab, name=f"cap_a{k}") for k in range(n)]
        recent = Signal(n)  # a command that feeds a MAC pipeline, k + 1 cycles ago
        feeds = self.cmd.valid & Cat(*[self.cmd.p.cmd == DramCmd[c]
                                       for c in ("MAC", "MAC16", "WRMAC16")]).any()
        m.d.sync += recent.eq(Cat(feeds, recent[:-1]))
        fast = rdmac & (recent == 0) & ~Cat(*cap_v).any()
        m.d.sync += [col_v[0].eq(col_in), col_a[0].eq(col_acc), cap_v[0].eq(rdmac & ~fast),
                     cap_a[0].eq(rd_acc)]
        for k in range(1, n):
            m.d.sync += [col_v[k].eq(col_v[k - 1]), col_a[k].eq(col_a[k - 1]),
                         cap_v[k].eq(cap_v[k - 1]), cap_a[k].eq(cap_a[k - 1])]
        with m.If(fast):  # the line is empty (no capture on its way)
            m.d.sync += [cap_v[-1].eq(1), cap_a[-1].eq(rd_acc)]
        landed, landed_acc = col_v[-2], col_a[-2]
        capture, cap_acc = cap_v[-1], cap_a[-1]
        # cleared_out[a]: accumulator a was read and no column has landed in it since (reads +0).
        cleared_out = Signal(d.accumulators, init=(1 << d.accumulators) - 1)
        with m.If(landed):
            m.d.sync += cleared_out.bit_select(landed_acc, 1).eq(0)
        with m.If(capture):
            m.d.sync += cleared_out.bit_select(cap_acc, 1).eq(1)
        value = Value.cast(mac.acc).word_select(cap_acc, 32)
        m.d.comb += [self.acc_valid.eq(capture),
                     self.acc.eq(Mux(cleared_out.bit_select(cap_acc, 1), 0, value))]


def _f32_minus_bf16(x, hi16):
    """``x - hi`` for ``hi`` = ``x`` truncated to bf16 (its top 16 bits), exactly.

    The difference is ``x``'s 16 low fraction bits ``low`` times ``2**(E - 150)`` (``E`` the
    exponent field), same sign: normalise ``low`` (leading one at bit ``p = 15 - lz``), giving
    exponent field ``E - 8 - lz`` and the bits below the leading one as the fraction. Zero when
    ``low`` is zero, ``x`` is zero/Inf/NaN, or the result would be subnormal.
    """
    low = x[:16]
    exp = x[23:31]
    sign = x[31]
    lz = 16
    for k in range(16):  # later (higher) set bits override: lz of the highest one
        lz = Mux(low[k], 15 - k, lz)
    mant = (low << (lz + 1))[:16]  # fraction bits below the leading one, left-aligned
    new_exp = (exp - 8 - lz)[:8]
    ok = (low != 0) & (exp != 0) & (exp != 0xFF) & (exp > 8 + lz)
    return Mux(ok, Cat(Const(0, 7), mant, new_exp, sign), 0)
