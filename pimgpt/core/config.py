"""Validated hardware configuration, loaded from YAML presets or user files (``safe_load`` only).

``load_hw("pimgpt-gddr6-8ch")`` reads a preset shipped in ``pimgpt/configs``; any other argument is
taken as a path to a YAML file. Errors are :class:`ConfigError` with one line naming the bad key
and the fix.

The schema is defined once, here: the fields of :class:`DramConfig` and :class:`AsicConfig` (each
field's :func:`key` metadata gives its type, range and whether it may be left out),
:data:`TIMING_KEYS` (each timing's minimum) and :data:`ENERGY_KEYS`. Every
value is checked: the right type, finite, in range; no unknown key in any section (a misspelt key
would otherwise be ignored silently); and timings that let a simulation make progress (a refresh
interval longer than the refresh itself plus a row cycle). Adding a hardware parameter is adding
one field with its :func:`key`.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import MISSING, dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml

from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import read_text

DEFAULT_HW = "pimgpt-gddr6-8ch"

#: Largest latency or count, in cycles, that a config may give (about 0.5 ms at 2 GHz).
MAX_CYCLES = 1_000_000

#: DRAM timing keys (tCK) and the smallest value each may take. Zero means "no constraint";
#: a burst, the column-to-column gaps, a row cycle and refresh take at least one cycle, so that
#: every command moves time forward (a refresh interval of 0 would never end).
TIMING_MIN = {
    "nBL": 1, "nCL": 0, "nRCDRD": 0, "nRCDRDMAC": 0, "nRCDEWMUL": 0, "nRCDRDAF": 0,
    "nRCDRDCP": 0, "nRCDWR": 0, "nRCDWRCP": 0, "nRP": 0, "nRAS": 0, "nRC": 1, "nWR": 0, "nRTP": 0,
    "nCWL": 0, "nCCDS": 1, "nCCDL": 1, "nRRDS": 0, "nRRDL": 0, "nWTRS": 0, "nWTRL": 0, "nFAW": 0,
    "nRFC": 1, "nRFCpb": 0, "nREFI": 1, "nMODCH": 0,
}
TIMING_KEYS = tuple(TIMING_MIN)


class ConfigError(PimgptError):
    """A configuration file or value is invalid; the message says which and how to fix it."""


@dataclass(frozen=True)
class Key:
    """How one configuration value is checked (the metadata of a config field)."""

    kind: type  #: int, float or bool
    lo: float | None = None  #: smallest allowed value
    hi: float | None = None  #: largest allowed value
    pow2: bool = False  #: must be a power of two
    multiple: int = 1  #: must be a multiple of this


def key(kind: type, lo=None, hi=None, *, default=MISSING, pow2: bool = False,
        multiple: int = 1):
    """A dataclass field that is a validated config key (required unless it has a default)."""
    return field(default=default,
                 metadata={"key": Key(kind, lo, hi, pow2=pow2, multiple=multiple)})


@dataclass(frozen=True)
class DramConfig:
    """PIM DRAM organisation (see docs/isa.md for how programs address it)."""

    channels: int = key(int, 1, 32)  # ch_mask is 32 bits
    banks: int = key(int, 1, 256)  # per channel
    bank_groups: int = key(int, 1, 256)
    rows: int = key(int, 1, 2**20)  # per bank
    row_bytes: int = key(int, 32, 2**16, pow2=True)
    column_bytes: int = key(int, 32, 32)  # one MAC step of 16 bf16 lanes
    gb_bytes: int = key(int, 32, 2**16, multiple=32)  # global buffer per channel
    tck_ns: float = key(float, 1e-3, 1e3)  # DRAM command clock period
    io_gbps_per_pin: float = key(float, 1e-3, 1e3)
    io_pins: int = key(int, 1, 1024)
    #: perf model: a second row buffer per bank (subarray-level parallelism) so the next row can
    #: be activated while the current one computes; see docs/paper.md.
    act_overlap: bool = key(bool, default=False)
    #: fp32 MAC accumulators per bank (``MAC ... acc``; ``RD_MAC`` reads several in one visit)
    accumulators: int = key(int, 1, 1024, default=1)
    #: Model the standard's mode switches (GDDR6-AiM's register-access mode, nMODCH each way);
    #: false is the idealised variant with no switches.
    mode_switch: bool = key(bool, default=True)
    #: perf model (controller policy): a register-mode visit that sits between two MAC_ABKs first
    #: precharges and activates the next MAC_ABK's row, so the activation runs during the visit.
    early_activate: bool = key(bool, default=True)
    #: mapper: the V cache channel-major (each head's dimensions in one or two channels, for
    #: multi-head attention with heads of whole banks): fewer global-buffer loads for p . V,
    #: less overlap of the softmaxes (``pimgpt.sw.mapper.v_channel_major``).
    v_channel_major: bool = key(bool, default=False)
    #: DRAM standard preset (a name of ``pimgpt.core.dram.STANDARDS``: rows, modes, command
    #: timing); left out, the default preset (``pimgpt.core.dram.DEFAULT_STANDARD``).
    standard: str | None = None
    #: Controller refresh policy (``pimgpt.core.dram.REFRESH_POLICIES``): ``postpone`` (postpone
    #: while busy, refresh when idle or at a row switch) or ``eager``; left out, ``postpone`` when
    #: the standard allows postponing refreshes.
    refresh_policy: str | None = None

    @property
    def row_elems(self) -> int:
        """bf16 elements per DRAM row."""
        return self.row_bytes // 2

    @property
    def col_elems(self) -> int:
        """bf16 elements per column (one MAC step)."""
        return self.column_bytes // 2

    @property
    def cols_per_row(self) -> int:
        return self.row_bytes // self.column_bytes

    @property
    def gb_elems(self) -> int:
        """bf16 elements in one channel's global buffer."""
        return self.gb_bytes // 2

    @property
    def slots(self) -> int:
        """Banks in the whole system."""
        return self.channels * self.banks

    @property
    def capacity_bytes(self) -> int:
        return self.slots * self.rows * self.row_bytes

    @property
    def channel_gbytes_per_s(self) -> float:
        return self.io_gbps_per_pin * self.io_pins / 8


@dataclass(frozen=True)
class AsicConfig:
    clock_ghz: float = key(float, 1e-3, 1e2)
    scratchpad_words: int = key(int, 16, 2**24)  # fp32 words of SRAM
    #: SIMD lanes of the vector unit (the microcode exists for 16, 32, 64 and 128)
    vector_lanes: int = key(int, 16, 128, pow2=True)
    #: pipeline latencies (ASIC cycles) of the vector unit's fp32 adder and multiplier and of a
    #: scratchpad read: the microcode's schedule and cost (pimgpt/core/vu) follow them
    fp_add_latency: int = key(int, 1, 8)
    fp_mul_latency: int = key(int, 1, 8)
    sp_read_latency: int = key(int, 1, 8)
    #: micro-operations the vector unit issues per cycle (1, or 2 of different classes)
    vector_issue_width: int = key(int, 1, 2)
    #: identical vector units sharing the scratchpad; a row-batched SOFTMAX is shared out among
    #: them by rows, everything else runs on unit 0 (pimgpt/core/vu/cluster.py)
    vector_units: int = key(int, 1, 8, default=1, pow2=True)
    #: PIM engine pipeline (tCK; the defaults are the RTL's, docs/rtl.md "Cycles against the
    #: performance simulator"): from a barrier to the first DRAM command of a PIM instruction
    #: (front end, PIM engine decode, issue stage)
    pim_dispatch_latency: int = key(int, 0, 64, default=2)
    #: from read data leaving the pins (RD, RDMAC16: the standard's ``done_after``) to their
    #: scratchpad write, which a barrier or a hazard waits for (return writer)
    pim_return_latency: int = key(int, 0, 64, default=1)
    #: PIM instructions that write the scratchpad (RD_VEC, RD_MAC, ...) with reads not landed
    #: yet: the PIM engine's hazard tracker keeps one entry each, and the next such instruction
    #: (and everything behind it: the engine accepts instructions in order) waits for a free one
    pim_read_entries: int = key(int, 1, 256, default=8)
    #: the WR_ELEM wave generator: tCK to examine one element (also the one that closes a wave,
    #: and the end check or channel step before each wave emitted at the end)
    elem_scan_cycles: int = key(int, 0, 64, default=2)
    #: the WR_ELEM wave generator: tCK per wave besides one per op it emits (two before its
    #: first op, one after its last)
    elem_wave_cycles: int = key(int, 0, 64, default=3)
    #: one WR_ELEM wave generator per channel (each on its channel's command bus, in parallel)
    #: instead of the RTL's one generator whose ops take turns across the channels
    elem_per_channel: bool = key(bool, default=False)
    #: the compiler may give a step SOFTMAXU: the softmax leaves out its product by 1/sum, which
    #: a VMUL applies to p . V's outputs (d_head words a head, not one word a position;
    #: docs/numerics.md, "Softmax"), where its cost model finds the step faster so. The step's
    #: numerics follow (its plan records it; the reference models are told, sim/reference.py)
    late_softmax_norm: bool = key(bool, default=False)
    #: a what-if of the performance model: every vector-unit instruction takes one ASIC cycle
    #: (its work still counts for energy), the vector unit a real design could at best
    #: approach; tells what a faster unit would still buy. The RTL refuses it
    vector_unit_ideal: bool = key(bool, default=False)


@dataclass(frozen=True)
class HwConfig:
    """A whole PIM-GPT system: DRAM organisation, DRAM timing (tCK cycles) and the ASIC."""

    name: str
    dram: DramConfig
    timing: dict
    asic: AsicConfig
    energy: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)


#: Keys of the optional ``energy`` section (pJ per event, mW static); see the default preset.
ENERGY_KEYS = (
    "act_pj",
    "pre_pj",
    "mac_col_pj",
    "rdwr_col_pj",
    "gb_col_pj",
    "acc_rw_pj",
    "io_pj_per_bit",
    "ref_pj",
    "asic_op_pj",
    "asic_sram_pj_per_word",
    "dram_static_mw_per_channel",
    "asic_static_mw",
    "vector_unit_static_mw",
)
#: Largest energy figure (pJ per event or mW): 1 mJ per event keeps every total finite.
MAX_ENERGY = 1e9
#: Top-level keys of a hardware YAML file.
TOP_KEYS = ("name", "dram", "timing", "asic", "energy")
_FIX = f"see pimgpt/configs/{DEFAULT_HW}.yaml"


# ---------------------------------------------------------------------------------------------
# Checking one value
# ---------------------------------------------------------------------------------------------
def _fmt(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _rule(k: Key) -> str:
    kind = {int: "an integer", float: "a finite number", bool: "true or false"}[k.kind]
    parts = [kind]
    if k.lo is not None and k.hi is not None and k.lo == k.hi:
        return f"{_fmt(k.lo)}"
    if k.lo is not None or k.hi is not None:
        lo = _fmt(k.lo) if k.lo is not None else ""
        hi = _fmt(k.hi) if k.hi is not None else ""
        parts.append(f"in {lo}..{hi}" if k.hi is not None else f">= {lo}")
    if k.pow2:
        parts.append("and a power of two")
    if k.multiple > 1:
        parts.append(f"and a multiple of {k.multiple}")
    return " ".join(parts)


def check_value(value, k: Key, name: str, where: str):
    """``value`` converted to ``k.kind`` if it satisfies ``k``, else :class:`ConfigError`.

    Parameters
    ----------
    value
        The parsed YAML value.
    k : Key
    name : str
        Dotted key for the message (``dram.channels``).
    where : str
        The config's name or file.
    """
    def bad():
        return ConfigError(f"{where}: '{name}' must be {_rule(k)}, got {value!r}; {_FIX}")

    if k.kind is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float) if k.kind is float else int):
        raise bad()
    if k.kind is float and not math.isfinite(value):
        raise bad()
    if (k.lo is not None and value < k.lo) or (k.hi is not None and value > k.hi):
        raise bad()
    if k.pow2 and value & (value - 1):
        raise bad()
    if k.multiple > 1 and value % k.multiple:
        raise bad()
    return k.kind(value)


def _section(data: dict, name: str, where: str, required: bool = True) -> dict:
    value = data.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        what = "missing section" if name not in data else "bad section"
        raise ConfigError(f"{where}: {what} '{name}:'; it must be a mapping of keys ({_FIX})")
    return value


def check_known_keys(section: dict, valid, where: str, path: str | None = None,
                     error: type[PimgptError] = ConfigError) -> None:
    """Refuse a mapping with keys outside ``valid`` (a misspelt key would be ignored silently).

    Every unknown key is named in the one line, with the closest valid key of each that has one
    (``did you mean 'channels'?``) and the list of valid keys. Hardware configs, model YAML files
    and their sections share this message.

    Parameters
    ----------
    section : dict
        The parsed mapping.
    valid : iterable
        Its allowed keys, in the order to list them.
    where : str
        The file or config the mapping comes from, first in the message.
    path : str, optional
        The section (``"dram:"``, ``"the top level"``), after the unknown keys.
    error : type
        The :class:`PimgptError` subclass to raise.

    Raises
    ------
    PimgptError
        ``error``, when any key is unknown.
    """
    valid = [str(v) for v in valid]
    unknown = sorted(str(k) for k in section if str(k) not in valid)
    if not unknown:
        return
    close = {k: m[0] for k in unknown if (m := difflib.get_close_matches(k, valid, n=1))}
    if len(close) == 1 and len(unknown) == 1:
        hint = f" (did you mean '{close[unknown[0]]}'?)"
    elif close:
        hint = " (did you mean " + ", ".join(f"'{m}' for '{k}'" for k, m in close.items()) + "?)"
    else:
        hint = ""
    inside = f" in {path}" if path else ""
    raise error(f"{where}: unknown keys {unknown}{inside}{hint}; valid keys: {', '.join(valid)}")


def _from_fields(cls, section: dict, where: str, path: str):
    """An instance of a config dataclass from a YAML mapping, every key checked."""
    keyed = [f for f in fields(cls) if "key" in f.metadata]
    check_known_keys(section, [f.name for f in fields(cls)], where, f"{path}:")
    values = {}
    for f in keyed:
        if f.name not in section:
            if f.default is MISSING:
                raise ConfigError(f"{where}: missing key '{f.name}' in {path}:; add it ({_FIX})")
            continue
        values[f.name] = check_value(section[f.name], f.metadata["key"], f"{path}.{f.name}",
                                     where)
    return values


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------
def _standard_name(name, where: str) -> str:
    """``dram.standard`` checked against the presets (the default preset when absent)."""
    # The presets are defined with the standard (pimgpt.core.dram), which imports this module.
    from pimgpt.core.dram import DEFAULT_STANDARD, STANDARDS

    if name is None:
        return DEFAULT_STANDARD
    if not isinstance(name, str) or name not in STANDARDS:
        raise ConfigError(f"{where}: 'dram.standard' must be one of {sorted(STANDARDS)}, got "
                          f"{name!r}; {_FIX}")
    return name


def _refresh_policy(name, where: str) -> str | None:
    """``dram.refresh_policy`` checked against the policies (None when absent)."""
    from pimgpt.core.dram import REFRESH_POLICIES

    if name is None:
        return None
    if not isinstance(name, str) or name not in REFRESH_POLICIES:
        raise ConfigError(f"{where}: 'dram.refresh_policy' must be one of "
                          f"{list(REFRESH_POLICIES)}, got {name!r}; {_FIX}")
    return name


def _dram(d: dict, where: str) -> DramConfig:
    dram = DramConfig(**_from_fields(DramConfig, d, where, "dram"),
                      standard=_standard_name(d.get("standard"), where),
                      refresh_policy=_refresh_policy(d.get("refresh_policy"), where))
    if dram.gb_bytes > dram.row_bytes:
        raise ConfigError(f"{where}: dram.gb_bytes must be a multiple of 32 and at most row_bytes "
                          f"({dram.row_bytes}), got {dram.gb_bytes}")
    if dram.bank_groups > dram.banks or dram.banks % dram.bank_groups:
        raise ConfigError(f"{where}: dram.banks ({dram.banks}) must divide into bank_groups "
                          f"({dram.bank_groups})")
    return dram


def _timing(t: dict, where: str) -> dict:
    check_known_keys(t, TIMING_KEYS, where, "timing:")
    out = {}
    for name, lo in TIMING_MIN.items():
        if name not in t:
            raise ConfigError(f"{where}: missing key '{name}' in timing:; add it ({_FIX})")
        out[name] = check_value(t[name], Key(int, lo, MAX_CYCLES), f"timing.{name}", where)
    # Progress: between two refreshes there must be room for the refresh itself and a whole row
    # cycle (precharge, activate, access); otherwise refreshes alone fill the time.
    need = out["nRFC"] + out["nRP"] + out["nRC"]
    if out["nREFI"] <= need:
        raise ConfigError(f"{where}: timing.nREFI ({out['nREFI']}) must exceed nRFC + nRP + nRC "
                          f"({need}), or refreshes leave no time for work")
    return out


def _asic(a: dict, where: str) -> AsicConfig:
    return AsicConfig(**_from_fields(AsicConfig, a, where, "asic"))


def _energy(energy: dict, where: str) -> dict:
    check_known_keys(energy, ENERGY_KEYS, where, "energy:")
    return {k: check_value(v, Key(float, 0.0, MAX_ENERGY), f"energy.{k}", where)
            for k, v in energy.items()}


def hw_variant(hw: HwConfig, section: str, **keys) -> HwConfig:
    """``hw`` with the keys ``keys`` of section ``section`` replaced, validated as a preset is
    (a design-space point: ``hw_variant(hw, "dram", act_overlap=True)``); the name stays."""
    raw = copy.deepcopy(hw.raw)
    raw[section].update(keys)
    return hw_from_dict(raw, where=f"{hw.name} ({', '.join(f'{k}={v}' for k, v in keys.items())})")


def hw_from_dict(data: dict, where: str = "hw config") -> HwConfig:
    """Build and validate a :class:`HwConfig` from a parsed YAML mapping.

    A mapping with ``base: <preset name>`` is that preset with the mapping's keys merged over it
    (mappings key by key), so a preset or user file states only what differs.

    Raises
    ------
    ConfigError
        Naming the first missing, unknown, mistyped, non-finite or out-of-range key.
    """
    data = _with_base(data, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a mapping with dram/timing/asic sections")
    check_known_keys(data, TOP_KEYS, where, "the top level")
    name = data.get("name", where)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    dram = _dram(_section(data, "dram", where), where)
    timing = _timing(_section(data, "timing", where), where)
    asic = _asic(_section(data, "asic", where), where)
    energy = _energy(_section(data, "energy", where, required=False), where)
    return HwConfig(name=name, dram=dram, timing=timing, asic=asic, energy=energy, raw=data)


# ---------------------------------------------------------------------------------------------
# Files and presets
# ---------------------------------------------------------------------------------------------
def hw_presets() -> list[str]:
    """Names of the hardware presets shipped with pimgpt."""
    folder = resources.files("pimgpt") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_yaml(path: Path, what: str = "YAML file",
              missing: str = "give a preset name or an existing YAML path") -> dict:
    """``yaml.safe_load`` a UTF-8 file; I/O, encoding and syntax errors are :class:`ConfigError`
    (``what`` names the file in messages, ``missing`` is the fix for a file that is not there)."""
    text = read_text(path, what, ConfigError, missing=missing)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{at}; fix the syntax") from None
    except RecursionError:  # deeply nested flow collections
        raise ConfigError(f"{path}: YAML nested too deeply; fix the file") from None


def _merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s keys replacing its own, mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merge(out[key], value)
        out[key] = value
    return out


def _with_base(data, where: str, seen: tuple = ()):
    """Resolve ``base: <preset>``: the preset's sections with this mapping's keys merged over them
    (e.g. ``base: pimgpt-gddr6-8ch`` and ``dram: {channels: 16}``)."""
    if not isinstance(data, dict) or "base" not in data:
        return data
    base = data["base"]
    if not isinstance(base, str) or base not in hw_presets():
        raise ConfigError(
            f"{where}: base {base!r} is not a hardware preset; use one of {hw_presets()}"
        )
    if base in seen:
        raise ConfigError(f"{where}: base presets form a cycle ({' -> '.join(seen + (base,))})")
    with resources.as_file(resources.files("pimgpt") / "configs" / f"{base}.yaml") as p:
        parent = _with_base(load_yaml(p), base, seen + (base,))
    own = {k: v for k, v in data.items() if k != "base"}
    merged = _merge(parent, own) if isinstance(parent, dict) else own
    if "name" not in own:
        merged.pop("name", None)  # a file without a name is named after itself, not its base
    return merged


def load_hw(name_or_path: str | Path | None = None) -> HwConfig:
    """Load a hardware preset by name, or a YAML file by path (default: ``pimgpt-gddr6-8ch``).

    A file may start from a preset with ``base: <preset name>`` (see :func:`hw_from_dict`).
    """
    if name_or_path is not None and str(name_or_path) == "":
        raise ConfigError("--hw is an empty string; give a preset name or a YAML path (or leave "
                          f"it out for {DEFAULT_HW})")
    name = str(name_or_path or DEFAULT_HW)
    if name in hw_presets():
        with resources.as_file(resources.files("pimgpt") / "configs" / f"{name}.yaml") as p:
            return hw_from_dict(load_yaml(p, "hardware YAML"), where=name)
    path = Path(name)
    if not path.suffix and not path.exists():
        raise ConfigError(
            f"unknown hardware preset '{name}'; choose one of {hw_presets()} or a YAML path"
        )
    return hw_from_dict(load_yaml(path, "hardware YAML"), where=str(path))
