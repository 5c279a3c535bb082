"""The PIM DRAM standard as data: commands, footprints, modes and the timing rows between them.

Like a Ramulator 2 standard (``python/ramulator/dram/gddr6.py``), a :class:`DramStandard` is a
table, never nested ifs. The config chooses one preset with ``dram.standard``:

``gddr6-aim`` (default)
    GDDR6-AiM as characterised on silicon (SK hynix, ISSCC 2022; the open AiM simulator built on
    Ramulator 2): MAC, copy and register commands have their own activation-to-command delays
    (``nRCDRDMAC``, ``nRCDRDCP``, ``nRCDWRCP``), and the host reaches the global buffer and the
    MAC accumulators (``WRGB``, ``RDMAC16``, ``WRMAC16``) only in a *register-access mode*;
    entering and leaving it costs ``nMODCH`` each way (below).
``gddr6``
    The same command set on a plain JEDEC GDDR6 channel, as PIM-GPT assumes: a MAC column is
    timed as a read (``nRCDRD``), a bank-to-GB copy as a read, a GB-to-bank copy as a write
    (``nRCDWR``), and there is no register-access mode.

Rows
----
::

    Row(scope, preceding commands, following commands, latency expression[, window])

means: a *following* command may issue no earlier than ``latency`` tCK after a *preceding*
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

The special preceding/following set ``ALL`` (every command) expresses the command bus (one
command per tCK per channel) and the mode switch (no command for ``nMODCH`` after it).

Latency expressions are sums/differences of timing keys of the config (``hw.timing``), integer
literals, and the derived key ``nIO``: tCK for one 32-byte burst on the channel's data pins at the
configured rate (``column_bytes * 8 / (io_gbps_per_pin * io_pins)`` ns, rounded up to tCK), never
less than ``nBL``. Negative results clamp to 0.

Footprints
----------
A command's *footprint* is one node of the channel tree: one bank (``ACT``, ``PRE``, ``RD``,
``WR``, ``MAC``, ``RDCP``, ``WRCP``), one bank group (``ACT4``, ``PRE4``) or the whole channel
(``ACT16``, ``PREA``, ``MAC16``, ``WR16``, ``WRGB``, ``RDMAC16``, ``WRMAC16``, ``REFab``,
``MODREG``, ``MODARR``). Row commands also name a row buffer (``sub``); channel buffers (GB,
accumulators), refresh and mode switches do not.

Modes (``gddr6-aim``)
---------------------
Each channel is in *array* mode (the state after power-up) or in *register-access* mode. The
commands of :attr:`DramStandard.register_mode` (``WRGB``, ``RDMAC16``, ``WRMAC16``: the ISA's
``WR_GB``, ``RD_MAC``, ``WR_BIAS``, as in the open AiM simulator's ``require_reg_RW_mod``) issue
only in register mode, every other command only in array mode. ``MODREG`` enters register mode,
``MODARR`` returns to array mode; after either, no command of the channel may issue for ``nMODCH``
tCK, and a switch waits until the register data of the mode it leaves are off the pins
(``RDMAC16``: ``nIO``) or have landed (``WRGB``/``WRMAC16``: ``nCWL + nIO``). A controller
inserts a switch exactly when the next command needs the other mode; a channel stays in the mode
of its last command, so consecutive register commands (several ``RD_MAC``\\ s, an ``RD_MAC`` then a
``WR_GB``) share one *register-mode visit*. ``dram.mode_switch: false`` is the idealised variant
(no modes, no switch commands; rows that name a switch are dropped).

Refresh
-------
Every channel needs one all-bank refresh (``REFab``, all banks precharged first) per ``nREFI`` on
average; ``REFab`` blocks every command of its channel for ``nRFC`` (JEDEC: no command but NOP/DES
within tRFC; rows ``REFab -> ALL``). Refresh *k* (k = 1, 2, ...) is *due* at ``k * nREFI`` from
power-up. The JEDEC GDDR family lets a controller postpone refreshes: at no time may more than
:attr:`DramStandard.refresh_postpone` (8) be due and not yet issued, so two refreshes are at most
``(8 + 1) * nREFI`` apart (GDDR7, JESD239D section 6.12.1, as quoted by Ramulator 2's refresh
models; the same 8 / 9 x tREFI as DDR3 and DDR4). Refreshes may also be issued ahead of time
(*pulled in*), each one lowering the count of those due later; DDR3/DDR4 (JESD79-3/-4) allow 8
ahead. JESD250 (GDDR6) itself was not available to us: the presets take the GDDR family's 8
postponed and allow :attr:`DramStandard.refresh_pull_in` ahead. With ``owed(t)`` = refreshes due
by ``t`` minus refreshes issued by ``t``, the standard requires
``-refresh_pull_in <= owed(t) <= refresh_postpone`` at every ``t``.

The controller's refresh policy, ``dram.refresh_policy`` (``refresh_policy(hw)``), is one of
:data:`REFRESH_POLICIES`:

``postpone`` (default when the standard allows postponing)
    Per channel, a refresh *sequence* is ``MODARR`` (in register mode), ``PREA`` (rows open),
    ``REFab``, each at its earliest legal cycle. Decisions are taken at *instruction boundaries*
    (before a channel's first command of its next PIM instruction, dispatched at ``t_d``) and at
    every barrier (``SYNC``/``EOC``, with ``t_d`` the barrier):

    1. *Idle*: the channel's command queue is empty from its last command until ``t_d``. The
       controller issues a sequence from ``x = max(its earliest legal cycle, the cycle from which
       owed > -refresh_pull_in)`` if it completes (``REFab`` + ``nRFC``) by ``t_d``, and repeats;
       a sequence that would not complete by ``t_d`` is issued at ``x`` all the same if rule 2
       or 3 would issue it at ``t_d`` anyway (at a barrier, whose next instruction is unknown,
       rule 3 only), or if ``owed(t_d) >= 1`` and its ``REFab`` issues at least ``nRFC / 2``
       before ``t_d`` (more of it hides in the window than delays the next instruction). The
       window's end is known in advance: at a barrier, the cycle the vector unit finishes (its
       instructions' cycle counts are fixed by their fields); at a hazard between PIM
       instructions, the cycle the data arrive.
    2. *At a row switch*: if ``owed(t) >= refresh_postpone / 2`` (``t``: the boundary) and the
       next instruction uses no row that is open in the channel (it closes every open row
       anyway), issue sequences until ``owed(t)`` is below that. Half the postponement budget
       stays for the idle windows of rule 1, where a refresh costs the PIM side nothing (with
       ``owed >= 1`` here the row switches took most refreshes before the vector unit's windows
       came: 1-2 % more latency per token, ``python -m pimgpt.apps.bench_dram``).
    3. *Forced*: otherwise, if ``owed(t) >= refresh_postpone - 1``, issue sequences until
       ``owed(t) < refresh_postpone - 1`` (one interval is kept in reserve for the instruction
       that follows; an instruction shorter than ``nREFI`` then never lets ``owed`` exceed
       ``refresh_postpone``).

    At the end of a program the refreshes due by its last cycle are issued (energy).
``eager``
    ``REFab`` at the first instruction boundary at or after each due cycle (at the due cycle
    itself when the channel idles there): the policy before postponement was modelled.

What is not modelled: per-bank refresh (``nRFCpb``), AiM's element-wise/activation-function
commands (``nRCDEWMUL``, ``nRCDRDAF``: the ISA has no such instruction). Bus turnaround beyond
data non-overlap is 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pimgpt.core.config import ConfigError, HwConfig

# ---------------------------------------------------------------------------------------------
# Commands (shared by every preset: the ISA expands into this command set)
# ---------------------------------------------------------------------------------------------
#: Command names; the index of a name is its integer code in logs and on the RTL command bus.
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
    "MODREG", "MODARR",              # enter register-access mode / return to array mode
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
    "MODREG": CHANNEL, "MODARR": CHANNEL,
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
#: Mode switches, and the mode each one enters.
MODE_SWITCHES = ("MODREG", "MODARR")
ALL = "ALL"

#: Weight of each activation in the nFAW window.
WINDOW_WEIGHT = {"ACT": 1, "ACT4": 4, "ACT16": 4}

#: Row-open commands and which commands need an open row.
OPENS = frozenset(ACTS)
CLOSES = frozenset(PRES)
NEEDS_OPEN_ROW = frozenset(ARRAY_READS + ARRAY_WRITES)

#: Channel modes (``Standard.mode_of`` values; 0: the command needs no particular mode).
ANY_MODE, ARRAY_MODE, REGISTER_MODE = 0, 1, 2
MODE_NAMES = ("any", "array", "register")
#: The switch command that enters each mode.
SWITCH_TO = {ARRAY_MODE: "MODARR", REGISTER_MODE: "MODREG"}

#: Bytes of one accumulator value moved by ``RDMAC16``/``WRMAC16`` (fp32, the numerics contract).
ACC_BYTES = 4


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


def _rows(rcd_mac: str, rcd_rdcp: str, rcd_wrcp: str) -> tuple[Row, ...]:
    """The rows every preset shares; the activation-to-command delays of the PIM column commands
    (MAC, bank-to-GB copy, GB-to-bank copy) are the preset's."""
    return (
        # Command bus: one command per tCK.
        Row("channel", (ALL,), (ALL,), "1", note="command bus"),
        # Data pins: bursts do not overlap; read -> write and write -> read turnarounds.
        Row("channel", IO_READS, IO_READS, "nIO", note="data bus, read bursts"),
        Row("channel", IO_WRITES, IO_WRITES, "nIO", note="data bus, write bursts"),
        Row("channel", _t("RD"), IO_WRITES, "nCL+nIO-nCWL",
            note="RD data off the bus before WR data"),
        Row("channel", IO_WRITES, IO_READS, "nCWL+nIO+nWTRS", note="write-to-read turnaround"),
        Row("bankgroup", ARRAY_WRITES, ARRAY_READS, "nCWL+nBL+nWTRL",
            note="write-to-read, same BG"),
        # Column slots.
        Row("channel", COLUMNS, COLUMNS, "nCCDS", note="column to column, any bank group"),
        Row("bankgroup", COLUMNS, COLUMNS, "nCCDL", note="column to column, same bank group"),
        # Global buffer and accumulators: data must have landed before use.
        Row("channel", GB_WRITES, GB_READS, "nCWL+nBL", note="GB write lands before GB read"),
        Row("channel", _t("WRMAC16"), _t("MAC", "MAC16"), "nCWL+nBL",
            note="bias lands before MAC"),
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
        Row("subarray", ACTS, _t("MAC", "MAC16"), rcd_mac),
        Row("subarray", ACTS, _t("RDCP"), rcd_rdcp),
        Row("subarray", ACTS, _t("WR", "WR16"), "nRCDWR"),
        Row("subarray", ACTS, _t("WRCP"), rcd_wrcp),
        Row("subarray", ARRAY_READS, PRES, "nRTP", note="read to precharge"),
        Row("subarray", ARRAY_WRITES, PRES, "nCWL+nBL+nWR", note="write recovery"),
        # Refresh.
        Row("channel", PRES, _t("REFab"), "nRP"),
        Row("channel", ACTS, _t("REFab"), "nRC"),
        Row("channel", _t("REFab"), (ALL,), "nRFC", note="refresh blocks the channel"),
    )


#: The register-access mode of GDDR6-AiM (module docstring, "Modes").
MODE_ROWS: tuple[Row, ...] = (
    Row("channel", MODE_SWITCHES, (ALL,), "nMODCH", note="mode switch (nMODCH)"),
    Row("channel", _t("RDMAC16"), MODE_SWITCHES, "nIO",
        note="register read data off the pins before a mode switch"),
    Row("channel", _t("WRGB", "WRMAC16"), MODE_SWITCHES, "nCWL+nIO",
        note="register writes land before a mode switch"),
)

#: tCK after issue at which a command's effect is complete (data delivered / landed).
DONE_AFTER = {
    "RD": "nCL+nIO", "WR": "nCWL+nIO", "WR16": "nCWL+nIO", "WRGB": "nCWL+nIO",
    "WRMAC16": "nCWL+nIO", "RDMAC16": "nIO", "MAC": "nCCDL", "MAC16": "nCCDL",
    "RDCP": "nCCDL", "WRCP": "nCWL+nBL", "REFab": "nRFC", "MODREG": "nMODCH",
    "MODARR": "nMODCH",
}


@dataclass(frozen=True)
class DramStandard:
    """A DRAM standard: its timing rows and its modes (the command set is shared, above).

    Attributes
    ----------
    name : str
        The value of ``dram.standard`` that selects it.
    summary : str
        One line for docs and reports.
    rows : tuple of Row
        Timing rows; rows naming a mode switch apply only while modes are modelled.
    register_mode : frozenset of str
        Commands that need the register-access mode (empty: the standard has no modes).
    refresh_postpone : int
        Most refreshes that may be due and not yet issued (module docstring, "Refresh"); 0: none
        may be postponed (the ``eager`` policy is then the default).
    refresh_pull_in : int
        Most refreshes that may be issued ahead of their due cycle.
    """

    name: str
    summary: str
    rows: tuple
    register_mode: frozenset = frozenset()
    refresh_postpone: int = 8
    refresh_pull_in: int = 8

    @property
    def has_modes(self) -> bool:
        return bool(self.register_mode)

    def timing_keys(self) -> set:
        """Timing keys (of ``hw.timing``) that the rows and done-after expressions name."""
        exprs = [r.latency for r in self.rows] + list(DONE_AFTER.values())
        names = {m.group(2) for e in exprs for m in _TOKEN.finditer(e)}
        return {n for n in names if not n.isdigit() and n != "nIO"}


#: The presets, by ``dram.standard`` name.
STANDARDS = {
    s.name: s for s in (
        DramStandard(
            "gddr6-aim",
            "GDDR6-AiM silicon timing: PIM activation delays and a register-access mode "
            "(nMODCH per switch) for WRGB/RDMAC16/WRMAC16",
            _rows("nRCDRDMAC", "nRCDRDCP", "nRCDWRCP") + MODE_ROWS,
            frozenset({"WRGB", "RDMAC16", "WRMAC16"})),
        DramStandard(
            "gddr6",
            "plain JEDEC GDDR6 timing for the PIM commands (MAC and copies timed as RD/WR), "
            "no register-access mode",
            _rows("nRCDRD", "nRCDRD", "nRCDWR")),
    )
}
DEFAULT_STANDARD = "gddr6-aim"

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
    """A :class:`DramStandard` evaluated against one hardware config (latencies in tCK).

    ``rows`` holds ``(Row, latency)`` pairs; the per-command tuples are indexed by command code.
    ``mode_of[c]`` is the mode command ``c`` needs (:data:`ANY_MODE` for every command when modes
    are not modelled) and ``switch_to[m]`` the code of the command entering mode ``m`` (-1: none).
    """

    name: str
    timing: dict
    rows: tuple  # (Row, latency int)
    done_after: tuple  # per command code
    footprint: tuple  # per command code
    has_sub: tuple  # per command code
    window_weight: tuple  # per command code (0 = not in a window)
    mode_of: tuple  # per command code: ANY_MODE / ARRAY_MODE / REGISTER_MODE
    switch_to: tuple  # per mode: command code of the switch into it, -1 if none
    banks: int
    bank_groups: int
    subs: int

    @property
    def banks_per_group(self) -> int:
        return self.banks // self.bank_groups

    @property
    def modes(self) -> bool:
        """Whether the channels switch modes (``MODREG``/``MODARR`` are issued)."""
        return any(self.mode_of)


def act_overlap(hw: HwConfig) -> bool:
    """The ``dram.act_overlap`` switch of the config (False when absent)."""
    return bool(getattr(hw.dram, "act_overlap", False))


def standard_of(hw: HwConfig) -> DramStandard:
    """The preset ``dram.standard`` names (``gddr6-aim`` when absent).

    Raises
    ------
    ConfigError
        If the name is not a preset.
    """
    name = getattr(hw.dram, "standard", None) or DEFAULT_STANDARD
    if name not in STANDARDS:
        raise ConfigError(f"{hw.name}: unknown dram.standard {name!r}; "
                          f"choose one of {sorted(STANDARDS)}")
    return STANDARDS[name]


#: Controller refresh policies (module docstring, "Refresh").
REFRESH_POLICIES = ("postpone", "eager")


def refresh_policy(hw: HwConfig) -> str:
    """The refresh policy of ``hw``: ``dram.refresh_policy``, or when absent ``postpone`` if its
    standard allows postponing refreshes, else ``eager``."""
    name = getattr(hw.dram, "refresh_policy", None)
    if name is None:
        return "postpone" if standard_of(hw).refresh_postpone else "eager"
    return name


def mode_switching(hw: HwConfig) -> bool:
    """Whether ``hw`` models mode switches: its standard has modes and ``dram.mode_switch`` is
    true (the default)."""
    return standard_of(hw).has_modes and bool(getattr(hw.dram, "mode_switch", True))


def acc_bursts(hw: HwConfig, nacc: int = 1) -> int:
    """Bursts one channel moves for ``nacc`` accumulators of every bank (``RDMAC16``/``WRMAC16``
    commands of one ``RD_MAC``/``WR_BIAS``): accumulator-major, each burst one accumulator index
    of up to ``column_bytes / ACC_BYTES`` (8) banks."""
    return nacc * -(-hw.dram.banks * ACC_BYTES // hw.dram.column_bytes)


def build_standard(hw: HwConfig) -> Standard:
    """Evaluate the rows of ``hw``'s standard against ``hw`` (the timing keys plus ``nIO``)."""
    pre = standard_of(hw)
    timing = derived_timing(hw)
    modes = mode_switching(hw)
    switches = set(MODE_SWITCHES)
    rows = tuple(
        (row, evaluate(row.latency, timing)) for row in pre.rows
        if modes or not (switches & set(row.preceding) or switches & set(row.following)))
    done = tuple(evaluate(DONE_AFTER[c], timing) if c in DONE_AFTER else 0 for c in COMMANDS)
    if modes:
        mode_of = tuple(ANY_MODE if c in switches else
                        REGISTER_MODE if c in pre.register_mode else ARRAY_MODE
                        for c in COMMANDS)
        switch_to = (-1, CMD[SWITCH_TO[ARRAY_MODE]], CMD[SWITCH_TO[REGISTER_MODE]])
    else:
        mode_of = (ANY_MODE,) * N_CMDS
        switch_to = (-1, -1, -1)
    return Standard(
        name=pre.name,
        timing=timing,
        rows=rows,
        done_after=done,
        footprint=tuple(FOOTPRINT[c] for c in COMMANDS),
        has_sub=tuple(c in HAS_SUB for c in COMMANDS),
        window_weight=tuple(WINDOW_WEIGHT.get(c, 0) for c in COMMANDS),
        mode_of=mode_of,
        switch_to=switch_to,
        banks=hw.dram.banks,
        bank_groups=hw.dram.bank_groups,
        subs=2 if act_overlap(hw) else 1,
    )
