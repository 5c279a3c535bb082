"""Validated hardware configuration, loaded from YAML presets or user files (``safe_load`` only).

``load_hw("pimgpt-gddr6-8ch")`` reads a preset shipped in ``pimgpt/configs``; any other argument is
taken as a path to a YAML file. Every field is checked; errors are :class:`ConfigError` with one
line naming the bad key and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from pimgpt.core.errors import PimgptError

DEFAULT_HW = "pimgpt-gddr6-8ch"

TIMING_KEYS = (
    "nBL nCL nRCDRD nRCDRDMAC nRCDEWMUL nRCDRDAF nRCDRDCP nRCDWR nRCDWRCP nRP nRAS nRC nWR nRTP "
    "nCWL nCCDS nCCDL nRRDS nRRDL nWTRS nWTRL nFAW nRFC nRFCpb nREFI nMODCH"
).split()


class ConfigError(PimgptError):
    """A configuration file or value is invalid; the message says which and how to fix it."""


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class DramConfig:
    """PIM DRAM organisation (see docs/isa.md for how programs address it)."""

    channels: int
    banks: int
    bank_groups: int
    rows: int
    row_bytes: int
    column_bytes: int
    gb_bytes: int
    tck_ns: float
    io_gbps_per_pin: float
    io_pins: int
    #: perf model: a second row buffer per bank (subarray-level parallelism) so the next row can
    #: be activated while the current one computes; see docs/paper.md.
    act_overlap: bool = False

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
    clock_ghz: float
    scratchpad_words: int
    vector_lanes: int
    #: perf model (optional keys): issue-to-result cycles of one vector instruction, cycles per
    #: dependent fp32 add of a left-to-right sum, fp32 add/mul count per element of each function.
    pipeline_cycles: int | None = None
    seq_add_cycles: int | None = None
    elem_ops: dict = field(default_factory=dict)


@dataclass(frozen=True)
class HwConfig:
    """A whole PIM-GPT system: DRAM organisation, DRAM timing (tCK cycles) and the ASIC."""

    name: str
    dram: DramConfig
    timing: dict
    asic: AsicConfig
    energy: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)


def _need(section: dict, key: str, kind, where: str, positive: bool = True):
    if key not in section:
        raise ConfigError(
            f"{where}: missing key '{key}'; add it (see pimgpt/configs/{DEFAULT_HW}.yaml)"
        )
    value = section[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{where}: '{key}' must be positive, got {value!r}")
    return kind(value)


def hw_from_dict(data: dict, where: str = "hw config") -> HwConfig:
    """Build and validate a :class:`HwConfig` from a parsed YAML mapping.

    A mapping with ``base: <preset name>`` is that preset with the mapping's keys merged over it.
    """
    data = _with_base(data, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a mapping with dram/timing/asic sections")
    for sec in ("dram", "timing", "asic"):
        if not isinstance(data.get(sec), dict):
            raise ConfigError(f"{where}: missing section '{sec}:'; copy it from the default preset")
    d, t, a = data["dram"], data["timing"], data["asic"]
    dram = DramConfig(
        channels=_need(d, "channels", int, where),
        banks=_need(d, "banks", int, where),
        bank_groups=_need(d, "bank_groups", int, where),
        rows=_need(d, "rows", int, where),
        row_bytes=_need(d, "row_bytes", int, where),
        column_bytes=_need(d, "column_bytes", int, where),
        gb_bytes=_need(d, "gb_bytes", int, where),
        tck_ns=_need(d, "tck_ns", float, where),
        io_gbps_per_pin=_need(d, "io_gbps_per_pin", float, where),
        io_pins=_need(d, "io_pins", int, where),
        act_overlap=d.get("act_overlap", False),
    )
    if not isinstance(dram.act_overlap, bool):
        raise ConfigError(f"{where}: 'act_overlap' must be true or false, got {dram.act_overlap!r}")
    if dram.column_bytes != 32:
        raise ConfigError(
            f"{where}: column_bytes must be 32 (16 bf16 MAC lanes), got {dram.column_bytes}"
        )
    if dram.row_bytes % dram.column_bytes or not _is_pow2(dram.row_bytes):
        raise ConfigError(
            f"{where}: row_bytes must be a power of two multiple of 32, got {dram.row_bytes}"
        )
    if dram.gb_bytes % dram.column_bytes or dram.gb_bytes > dram.row_bytes:
        raise ConfigError(
            f"{where}: gb_bytes must be a multiple of 32 and at most row_bytes, got {dram.gb_bytes}"
        )
    if dram.banks % dram.bank_groups:
        raise ConfigError(
            f"{where}: banks ({dram.banks}) must divide into bank_groups ({dram.bank_groups})"
        )
    if dram.channels > 32:
        raise ConfigError(f"{where}: at most 32 channels (ch_mask is 32 bits), got {dram.channels}")
    timing = {}
    for key in TIMING_KEYS:
        timing[key] = _need(t, key, int, f"{where} timing", positive=False)
        if timing[key] < 0:
            raise ConfigError(f"{where} timing: '{key}' must be >= 0, got {timing[key]}")
    unknown = set(t) - set(TIMING_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} timing: unknown keys {sorted(unknown)}; valid keys: {TIMING_KEYS}"
        )
    asic = AsicConfig(
        clock_ghz=_need(a, "clock_ghz", float, where),
        scratchpad_words=_need(a, "scratchpad_words", int, where),
        vector_lanes=_need(a, "vector_lanes", int, where),
        pipeline_cycles=_need(a, "pipeline_cycles", int, where, False)
        if "pipeline_cycles" in a
        else None,
        seq_add_cycles=_need(a, "seq_add_cycles", int, where) if "seq_add_cycles" in a else None,
        elem_ops=_elem_ops(a.get("elem_ops", {}), where),
    )
    energy = _energy(data.get("energy", {}) or {}, where)
    name = str(data.get("name", where))
    return HwConfig(name=name, dram=dram, timing=timing, asic=asic, energy=energy, raw=data)


#: Keys of the optional ``asic.elem_ops`` mapping (fp32 operations per element).
ELEM_OP_KEYS = ("exp", "recip", "rsqrt", "gelu")
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
)


def _elem_ops(ops, where: str) -> dict:
    if not isinstance(ops, dict):
        raise ConfigError(f"{where}: 'asic.elem_ops' must be a mapping of {ELEM_OP_KEYS}")
    unknown = set(ops) - set(ELEM_OP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} asic.elem_ops: unknown keys {sorted(unknown)}; valid: {ELEM_OP_KEYS}"
        )
    return {k: _need(ops, k, int, f"{where} asic.elem_ops") for k in ops}


def _energy(energy, where: str) -> dict:
    if not isinstance(energy, dict):
        raise ConfigError(f"{where}: 'energy' must be a mapping")
    unknown = set(energy) - set(ENERGY_KEYS)
    if unknown:
        raise ConfigError(f"{where} energy: unknown keys {sorted(unknown)}; valid: {ENERGY_KEYS}")
    out = {k: _need(energy, k, float, f"{where} energy", positive=False) for k in energy}
    for k, v in out.items():
        if v < 0:
            raise ConfigError(f"{where} energy: '{k}' must be >= 0, got {v!r}")
    return out


def hw_presets() -> list[str]:
    """Names of the hardware presets shipped with pimgpt."""
    folder = resources.files("pimgpt") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_yaml(path: Path) -> dict:
    """``yaml.safe_load`` a file, turning I/O and syntax errors into :class:`ConfigError`."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; give a preset name or an existing YAML path"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{at}; fix the syntax") from None


def _merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s keys replacing its own, mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merge(out[key], value)
        out[key] = value
    return out


def _preset_yaml(name: str) -> dict:
    with resources.as_file(resources.files("pimgpt") / "configs" / f"{name}.yaml") as p:
        return load_yaml(p)


def _with_base(data, where: str, seen: tuple = ()):
    """Resolve ``base: <preset>``: the preset's sections with this file's keys merged over them
    (so a preset or user file states only what differs, e.g. ``dram: {channels: 16}``)."""
    if not isinstance(data, dict) or "base" not in data:
        return data
    base = data["base"]
    if not isinstance(base, str) or base not in hw_presets():
        raise ConfigError(
            f"{where}: base {base!r} is not a hardware preset; use one of {hw_presets()}"
        )
    if base in seen:
        raise ConfigError(f"{where}: base presets form a cycle ({' -> '.join(seen + (base,))})")
    own = {k: v for k, v in data.items() if k != "base"}
    merged = _merge(_with_base(_preset_yaml(base), base, seen + (base,)), own)
    if "name" not in own:
        merged.pop("name", None)  # a file without a name is named after itself, not its base
    return merged


def load_hw(name_or_path: str | Path | None = None) -> HwConfig:
    """Load a hardware preset by name, or a YAML file by path (default: ``pimgpt-gddr6-8ch``).

    A file may start from a preset with ``base: <preset name>`` and give only the keys that
    differ (mappings are merged key by key).
    """
    name = str(name_or_path or DEFAULT_HW)
    if name in hw_presets():
        return hw_from_dict(_preset_yaml(name), where=name)
    path = Path(name)
    if not path.suffix and not path.exists():
        raise ConfigError(
            f"unknown hardware preset '{name}'; choose one of {hw_presets()} or a YAML path"
        )
    return hw_from_dict(load_yaml(path), where=str(path))
