"""The PIM DRAM standard as data: commands, footprints and the timing constraints between them.

Like a Ramulator 2 standard, the timing of the device is a table of rows, never nested ifs::

    Row(scope, preceding commands, following commands, latency expression[, window])

meaning: a *following* command may issue no earlier than ``latency`` tCK after a *preceding*
command when the two are related by ``scope``:

``"channel"``
    any two commands of the same channel;
``"bankgroup"``
    the two commands touch a common bank group;
``"bank"``
    the two commands touch a common bank;
``"subarray"``
    the two commands touch a common bank *and* the same row buffer (subarray group). With
    ``dram.act_overlap: false`` every bank has one row buffer and this is the same as ``"bank"``.

A row with ``window=W`` is a rolling-window constraint: a following command may issue only
``latency`` after the W-th most recent preceding command (``nFAW``: at most four activations in any
``nFAW`` window). Each command has a *weight* in the window: ``ACT`` counts 1, the multi-bank
``ACT4``/``ACT16`` count 4 (they draw at least the current of four activations, as assumed by the
RTL scheduler, ``hdl/dram_timing.py``).

The special preceding/following set ``ALL`` (every command) expresses the command bus: one
command per tCK per channel.

Latency expressions are sums/differences of timing keys of the config (``hw.timing``), integer
literals, and the derived key ``nIO``: tCK for one 32-byte burst on the channel's data pins at the
configured rate (``column_bytes * 8 / (io_gbps_per_pin * io_pins)`` ns, rounded up to tCK), never
less than ``nBL``. Negative results clamp to 0.

A command's *footprint* is one node of the channel tree: one bank (``ACT``, ``PRE``, ``RD``,
``WR``, ``MAC``, ``RDCP``, ``WRCP``), one bank group (``ACT4``, ``PRE4``) or the whole channel
(``ACT16``, ``PREA``, ``MAC16``, ``WR16``, ``WRGB``, ``RDMAC16``, ``WRMAC16``, ``REFab``).
Row commands also name a row buffer (``sub``); channel buffers (GB, accumulators) and refresh
do not.

What is not modelled: per-bank refresh (``nRFCpb``), AiM's element-wise/activation-function
commands (``nRCDEWMUL``, ``nRCDRDAF``: the ISA has no such instruction), and the mode-register
switch ``nMODCH`` (the chips stay in PIM mode). Bus turnaround beyond data non-overlap is 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pimgpt.core.config import ConfigError, HwConfig

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
#: Command names; the index of a name is its integer code in logs.
COMMANDS = (
    "ACT", "ACT4", "ACT16",          # activate a row: one bank / one bank group / all banks
    "PRE", "PRE4", "PREA",           # precharge: one bank / one bank group / all banks
    "RD", "WR",                      # one bank column <-> the ASIC over the data pins
    "MAC", "MAC16",                  # column . GB column into the accumulator: one / all banks
    "WR16",                          # the same column written into every bank (WR_ABK)
    "RDCP", "WRCP",                  # bank column -> global buffer / global buffer -> bank column
    "WRGB",                          # ASIC -> global buffer column over the data pins
    "RDMAC16", "WRMAC16",            # accumulators of all banks -> ASIC / ASIC -> accumulators
    "REFab",                         # all-bank refresh
)
CMD = {name: i for i, name in enumerate(COMMANDS)}
N_CMDS = len(COMMANDS)

BANK, BANKGROUP, CHANNEL = 0, 1, 2
LEVELS = {"bank": BANK, "bankgroup": BANKGROUP, "channel": CHANNEL, "subarray": BANK}
LEVEL_NAMES = ("bank", "bankgroup", "channel")

#: Footprint level of each command.
FOOTPRINT = {
    "ACT": BANK, "ACT4": BANKGROUP, "ACT16": CHANNEL,
    "PRE": BANK, "PRE4": BANKGROUP, "PREA": CHANNEL,
    "RD": BANK, "WR": BANK, "MAC": BANK, "MAC16": CHANNEL, "WR16": CHANNEL,
    "RDCP": BANK, "WRCP": BANK,
    "WRGB": CHANNEL, "RDMAC16": CHANNEL, "WRMAC16": CHANNEL, "REFab": CHANNEL,
}
#: Commands that name a row buffer (they act on rows).
HAS_SUB = frozenset({"ACT", "ACT4", "ACT16", "PRE", "PRE4", "PREA", "RD", "WR", "MAC", "MAC16",
                     "WR16", "RDCP", "WRCP"})

ACTS = ("ACT", "ACT4", "ACT16")
PRES = ("PRE", "PRE4", "PREA")
ARRAY_READS = ("RD", "MAC", "MAC16", "RDCP")
ARRAY_WRITES = ("WR", "WR16", "WRCP")
#: Column commands: every one takes a column slot of its bank group (nCCDL) / channel (nCCDS).
COLUMNS = ARRAY_READS + ARRAY_WRITES + ("WRGB", "RDMAC16", "WRMAC16")
#: Commands whose data cross the channel's data pins (one 32-byte burst each).
IO_READS = ("RD", "RDMAC16")
IO_WRITES = ("WR", "WR16", "WRGB", "WRMAC16")
GB_WRITES = ("WRGB", "RDCP")
GB_READS = ("MAC", "MAC16", "WRCP")
ALL = "ALL"

#: Weight of each activation in the nFAW window.
WINDOW_WEIGHT = {"ACT": 1, "ACT4": 4, "ACT16": 4}

#: Row-open commands and which commands need an open row.
OPENS = frozenset(ACTS)
CLOSES = frozenset(PRES)
NEEDS_OPEN_ROW = frozenset(ARRAY_READS + ARRAY_WRITES)


@dataclass(frozen=True)
class Row:
    """One timing constraint (see the module docstring)."""

    scope: str
    preceding: tuple
    following: tuple
    latency: str
    window: int = 0
    note: str = ""


def _t(*names):
    return tuple(names)


#: The timing constraints of a PIM channel. Latency expressions use keys of ``hw.timing``.
ROWS: tuple[Row, ...] = (
    # Command bus: one command per tCK.
    Row("channel", (ALL,), (ALL,), "1", note="command bus"),
    # Data pins: bursts do not overlap; read -> write and write -> read turnarounds.
    Row("channel", IO_READS, IO_READS, "nIO", note="data bus, read bursts"),
    Row("channel", IO_WRITES, IO_WRITES, "nIO", note="data bus, write bursts"),
    Row("channel", _t("RD"), IO_WRITES, "nCL+nIO-nCWL", note="RD data off the bus before WR data"),
    Row("channel", IO_WRITES, IO_READS, "nCWL+nIO+nWTRS", note="write-to-read turnaround"),
    Row("bankgroup", ARRAY_WRITES, ARRAY_READS, "nCWL+nBL+nWTRL", note="write-to-read, same BG"),
    # Column slots.
    Row("channel", COLUMNS, COLUMNS, "nCCDS", note="column to column, any bank group"),
    Row("bankgroup", COLUMNS, COLUMNS, "nCCDL", note="column to column, same bank group"),
    # Global buffer and accumulators: data must have landed before use.
    Row("channel", GB_WRITES, GB_READS, "nCWL+nBL", note="GB write lands before GB read"),
    Row("channel", _t("WRMAC16"), _t("MAC", "MAC16"), "nCWL+nBL", note="bias lands before MAC"),
    Row("bank", _t("MAC", "MAC16"), _t("RDMAC16"), "nCCDL", note="MAC pipeline drains"),
    Row("bank", _t("RDMAC16"), _t("MAC", "MAC16", "WRMAC16"), "nCCDL",
        note="accumulator read (and clear) before reuse"),
    # Activation.
    Row("channel", ACTS, ACTS, "nRRDS", note="ACT to ACT, any bank group"),
    Row("bankgroup", ACTS, ACTS, "nRRDL", note="ACT to ACT, same bank group"),
    Row("channel", ACTS, ACTS, "nFAW", window=4, note="four-activation window"),
    Row("subarray", ACTS, ACTS, "nRC", note="row cycle"),
    Row("subarray", ACTS, PRES, "nRAS", note="row active time"),
    Row("subarray", PRES, ACTS, "nRP", note="precharge time"),
    Row("subarray", ACTS, _t("RD"), "nRCDRD"),
    Row("subarray", ACTS, _t("MAC", "MAC16"), "nRCDRDMAC"),
    Row("subarray", ACTS, _t("RDCP"), "nRCDRDCP"),
    Row("subarray", ACTS, _t("WR", "WR16"), "nRCDWR"),
    Row("subarray", ACTS, _t("WRCP"), "nRCDWRCP"),
    Row("subarray", ARRAY_READS, PRES, "nRTP", note="read to precharge"),
    Row("subarray", ARRAY_WRITES, PRES, "nCWL+nBL+nWR", note="write recovery"),
    # Refresh.
    Row("channel", PRES, _t("REFab"), "nRP"),
    Row("channel", ACTS, _t("REFab"), "nRC"),
    Row("channel", _t("REFab"), ACTS + ("REFab",), "nRFC"),
)

#: tCK after issue at which a command's effect is complete (data delivered / landed).
DONE_AFTER = {
    "RD": "nCL+nIO", "WR": "nCWL+nIO", "WR16": "nCWL+nIO", "WRGB": "nCWL+nIO",
    "WRMAC16": "nCWL+nIO", "RDMAC16": "nIO", "MAC": "nCCDL", "MAC16": "nCCDL",
    "RDCP": "nCCDL", "WRCP": "nCWL+nBL", "REFab": "nRFC",
}

_TOKEN = re.compile(r"\s*([+-]?)\s*([A-Za-z][A-Za-z0-9]*|\d+)\s*")


def derived_timing(hw: HwConfig) -> dict:
    """The config's timing keys plus the derived ``nIO`` (tCK per 32-byte burst on the pins)."""
    d = hw.dram
    burst_ns = d.column_bytes * 8 / (d.io_gbps_per_pin * d.io_pins)
    t = dict(hw.timing)
    t["nIO"] = max(t["nBL"], math.ceil(burst_ns / d.tck_ns - 1e-9))
    return t


def evaluate(expr: str, timing: dict) -> int:
    """Value of a latency expression such as ``"nCWL+nBL+nWR"`` (clamped at 0).

    Raises
    ------
    ConfigError
        If the expression names a key that is not in ``timing``.
    """
    pos, total = 0, 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ConfigError(f"bad latency expression {expr!r} in the DRAM standard")
        sign, tok = m.groups()
        if tok.isdigit():
            value = int(tok)
        elif tok in timing:
            value = int(timing[tok])
        else:
            raise ConfigError(
                f"latency {expr!r} needs timing key '{tok}', which the hardware config lacks; "
                "add it to the timing section"
            )
        total += -value if sign == "-" else value
        pos = m.end()
    return max(total, 0)


def expand(names: tuple) -> tuple:
    """Command names of a preceding/following set (``ALL`` -> every command)."""
    return tuple(COMMANDS) if names == (ALL,) else names


@dataclass(frozen=True)
class Standard:
    """The standard evaluated against one hardware config (latencies in tCK)."""

    timing: dict
    rows: tuple  # (Row, latency int)
    done_after: tuple  # per command code
    footprint: tuple  # per command code
    has_sub: tuple  # per command code
    window_weight: tuple  # per command code (0 = not in a window)
    banks: int
    bank_groups: int
    subs: int

    @property
    def banks_per_group(self) -> int:
        return self.banks // self.bank_groups


def act_overlap(hw: HwConfig) -> bool:
    """The ``dram.act_overlap`` switch of the config (False when absent)."""
    return bool(getattr(hw.dram, "act_overlap", False))


def build_standard(hw: HwConfig) -> Standard:
    """Evaluate :data:`ROWS` against ``hw`` (the timing keys plus ``nIO``)."""
    timing = derived_timing(hw)
    rows = tuple((row, evaluate(row.latency, timing)) for row in ROWS)
    done = tuple(evaluate(DONE_AFTER[c], timing) if c in DONE_AFTER else 0 for c in COMMANDS)
    return Standard(
        timing=timing,
        rows=rows,
        done_after=done,
        footprint=tuple(FOOTPRINT[c] for c in COMMANDS),
        has_sub=tuple(c in HAS_SUB for c in COMMANDS),
        window_weight=tuple(WINDOW_WEIGHT.get(c, 0) for c in COMMANDS),
        banks=hw.dram.banks,
        bank_groups=hw.dram.bank_groups,
        subs=2 if act_overlap(hw) else 1,
    )
