"""Payloads between the PIM engine's stages, and its number-format conversions.

The PIM engine (:mod:`.pim_engine`) is a chain of small components talking through
``amaranth.lib.stream`` streams with these payloads:

* :func:`run_layout`: a run of columns within rows, for :class:`.pim_gen.ColumnRunGen`;
* :func:`region_cmd_layout`, :func:`acc_cmd_layout`, :func:`elem_cmd_layout`: the decoded
  instruction of the region-vector, accumulator and WR_ELEM generators;
* :func:`engine_op_layout`: one channel op with its scratchpad operand and the read
  tag it creates, from a generator to the issue stage (:class:`.pim_issue.IssueStage`);
* :func:`tag_layout`: where the data of one outstanding read land in the scratchpad.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from pimgpt.core.config import ConfigError, HwConfig

from .bank import check_acc_transfers
from .dram_timing import DramCmd
from .fp import check_int
from .pim_sched import chop_layout

__all__ = ["DataMode", "TagKind", "ent_bits", "WORD", "engine_op_layout", "run_layout",
           "region_cmd_layout", "acc_cmd_layout", "elem_cmd_layout", "tag_layout",
           "return_signature", "f32_to_bf16", "bf16_to_f32", "flat_width", "popcount",
           "check_engine_args"]

#: Width of the instruction fields the generators keep (the ISA's 32-bit slots).
WORD = 32
def ent_bits(hw: HwConfig) -> int:
    """Width of a hazard-tracker entry index: ``asic.pim_read_entries`` entries (scratchpad
    ranges of in-flight PIM reads tracked for read-after-write hazards)."""
    return max(1, ceil_log2(hw.asic.pim_read_entries))


class DataMode(enum.Enum, shape=2):
    """What the issue stage puts in a channel op's ``data``."""

    NONE = 0  #: the op's own data (none)
    BF16 = 1  #: the 16 scratchpad words at ``sp``, fp32 -> bf16 (RNE)
    FP32 = 2  #: the 8 scratchpad words at ``sp``, fp32 (WRMAC16)


class TagKind(enum.Enum, shape=1):
    """Which return path a read comes back on."""

    RD = 0   #: RD column data (16 bf16)
    ACC = 1  #: RDMAC16 burst (8 fp32 accumulators)


def check_engine_args(hw: HwConfig, sp_addr_width: int) -> int:
    """Validate the parameters every PIM engine stage takes; returns ``sp_addr_width``."""
    if not isinstance(hw, HwConfig):
        raise TypeError(f"hw must be a HwConfig, not {hw!r}")
    if hw.dram.col_elems != 16 or hw.dram.row_elems % 16:
        raise ConfigError(f"{hw.name}: the PIM engine needs 16-element columns (dram.column_bytes "
                         f"32), not {hw.dram.col_elems}")
    check_acc_transfers(hw)
    return check_int("sp_addr_width", sp_addr_width, 4, 26)


def flat_width(hw: HwConfig) -> int:
    """Width of a flat element address ``row * row_elems + element`` (with headroom)."""
    return ceil_log2(hw.dram.rows * hw.dram.row_elems) + 2


def popcount(value, n: int, width: int = 6):
    """Number of ones among the low ``n`` bits of ``value``."""
    return sum((value[k] for k in range(n)), Const(0, width))


def engine_op_layout(hw: HwConfig, aw: int) -> data.StructLayout:
    """One channel op from a generator: ``op`` (the channel op; ``mark`` is set later), ``chm``
    (target channels), ``dmode``, ``sp`` (scratchpad address of its operand words) and the read
    tag it creates: ``tag`` (creates one per target channel), ``tagkind``, ``tagbase``,
    ``tagmask``."""
    return data.StructLayout({
        "op": chop_layout(hw), "chm": hw.dram.channels, "dmode": DataMode, "sp": aw,
        "tag": 1, "tagkind": TagKind, "tagbase": aw, "tagmask": hw.dram.col_elems,
    })


def run_layout(hw: HwConfig, aw: int) -> data.StructLayout:
    """A run of column commands: ``cmd`` to banks ``bmask`` (``fpi``) of channels ``chm``, flat
    elements ``[cur, end)``, scratchpad words from ``spp``, GB columns from ``gbc``, MAC
    accumulator ``acc``; ``reading`` (data return to the scratchpad), ``rowless`` (no rows:
    WRGB)."""
    d = hw.dram
    col = chop_layout(hw)["c"].shape  # the command bus payload's field widths
    return data.StructLayout({
        "cmd": DramCmd, "chm": d.channels, "fpi": col["fpi"].shape, "bmask": d.banks,
        "cur": flat_width(hw), "end": flat_width(hw), "spp": aw, "gbc": col["gbcol"].shape,
        "acc": col["acc"].shape, "dmode": DataMode, "reading": 1, "rowless": 1,
    })


def region_cmd_layout() -> data.StructLayout:
    """RD_VEC / WR_VEC: ``read``, ``sp`` (dst / src) and the region fields of the ISA."""
    return data.StructLayout({"read": 1, "sp": WORD, "n": WORD, "vec": WORD, "region_row": WORD,
                              "n_local": WORD, "vec_len": WORD})


def elem_cmd_layout() -> data.StructLayout:
    """WR_ELEM: the region fields plus ``elem``."""
    return data.StructLayout({"sp": WORD, "n": WORD, "vec": WORD, "region_row": WORD,
                              "n_local": WORD, "vec_len": WORD, "elem": WORD})


def acc_cmd_layout(hw: HwConfig) -> data.StructLayout:
    """RD_MAC / WR_BIAS: ``write`` (WR_BIAS), ``chm``, ``sp`` (dst / src), ``acc``, ``nacc``."""
    return data.StructLayout({"write": 1, "chm": hw.dram.channels, "sp": WORD, "acc": WORD,
                              "nacc": WORD})


def tag_layout(hw: HwConfig, aw: int) -> data.StructLayout:
    """An outstanding read: scratchpad ``base`` of word 0, lane ``mask``, hazard entry ``ent``."""
    return data.StructLayout({"base": aw, "mask": hw.dram.col_elems, "ent": ent_bits(hw)})


def return_signature(hw: HwConfig) -> wiring.Signature:
    """Read data coming back from one channel (to the engine): RD columns and RDMAC16 bursts."""
    w = 8 * hw.dram.column_bytes
    return wiring.Signature({"rd_valid": Out(1), "rd_data": Out(w),
                             "acc_valid": Out(1), "acc_data": Out(w)})


def f32_to_bf16(x):
    """bf16 bits of fp32 ``x`` (RNE, DAZ, canonical NaN): ``numerics.f32_to_bf16``."""
    exp, mant, sign = x[23:31], x[:23], x[31]
    rounded = (x + 0x7FFF + x[16])[16:32]
    return Mux(exp == 0, Cat(Const(0, 15), sign),
               Mux((exp == 0xFF) & (mant != 0), Const(0x7FC0, 16), rounded))


def bf16_to_f32(h):
    """fp32 bits of bf16 ``h`` (exact; DAZ; canonical NaN): ``numerics.bf16_to_f32``."""
    exp, mant, sign = h[7:15], h[:7], h[15]
    return Mux(exp == 0, Cat(Const(0, 31), sign),
               Mux((exp == 0xFF) & (mant != 0), Const(0x7FC00000, 32), Cat(Const(0, 16), h)))
