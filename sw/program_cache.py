"""Reuse compiled programs: the hardware fields a program depends on, a content key, a disk cache.

A decode-step program depends on the model, the context, the schedule, the compiler's code and a
*subset* of the hardware configuration: the DRAM organisation the mapper places weights in, the
scratchpad size the compiler plans buffers in, and the timing and vector-unit figures the
pipelined schedule's cost model uses to choose where ``SYNC`` intervals end. Every other field
(the energy section, ``dram.act_overlap``, the DRAM timings the cost model does not read, ...)
only changes how the program *performs*, never its instructions, so points of a design-space sweep
that differ only there share one compiled program.

:data:`PROGRAM_HW_FIELDS` is that subset, defined once here; ``tests/test_sweep_cache.py`` runs
the compiler on a configuration that records every field it reads and fails when the compiler
reads a field missing from this list (so the list cannot silently fall behind the compiler).

The cache lives in the user cache folder (:func:`pimgpt.core.fileio.cache_dir`:
``$PIMGPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/pimgpt``, else ``~/.cache/pimgpt``), in
``programs/``: per key a ``.bin``
(:func:`pimgpt.core.isa.encode`) and a ``.json`` (instruction tags, the ``.bin``'s SHA-256, the
compiler's attention plan of the step), each written atomically, the JSON last, so a reader sees
a complete entry or none.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import PimgptError
from pimgpt.core.fileio import CACHE_ENV, atomic_write, atomic_write_text, cache_dir
from pimgpt.core.isa import decode, encode
from pimgpt.sw.fingerprint import model_fingerprint
from pimgpt.sw.models import ModelConfig

#: Hardware fields (dotted paths into the hardware YAML) that the mapper and the compiler read.
#: A path names a field or a whole mapping. A field missing from a config
#: is keyed as ``None``.
PROGRAM_HW_FIELDS = (
    # mapper: bank slots, row and global-buffer geometry, capacity check
    "dram.channels", "dram.banks", "dram.rows", "dram.row_bytes", "dram.column_bytes",
    "dram.gb_bytes",
    # mapper: the V cache's layout
    "dram.v_channel_major",
    # ISA v2: MAC accumulators per bank (the compiler batches RD_MACs over them)
    "dram.accumulators",
    # the pipelined schedule's cost model: pin rate, DRAM clock and burst (transfer times)
    "dram.tck_ns", "dram.io_gbps_per_pin", "dram.io_pins", "timing.nBL",
    # ... the DRAM timings it prices MAC trains, row switches and transfers with
    "timing.nCCDL", "timing.nCCDS", "timing.nCL", "timing.nCWL", "timing.nRCDRDMAC", "timing.nRP",
    "timing.nRTP",
    # ... the register-access mode it prices visits with, and the refresh it adds to estimates
    "dram.standard", "dram.mode_switch", "timing.nMODCH", "timing.nRFC", "timing.nREFI",
    # scratchpad plan; the vector unit's cost
    "asic.scratchpad_words", "asic.clock_ghz", "asic.vector_lanes", "asic.fp_add_latency",
    "asic.fp_mul_latency", "asic.sp_read_latency", "asic.vector_issue_width",
    "asic.vector_units",
    # the attention's softmax normalisation (SOFTMAXU where the cost model finds it faster)
    "asic.late_softmax_norm",
    # the what-if of a vector unit that costs one cycle an instruction (the schedule's cost)
    "asic.vector_unit_ideal",
)

class ProgramCacheError(PimgptError):
    """The program cache directory cannot be used."""


def _lookup(hw: HwConfig, path: str):
    """Value of a dotted path in a :class:`HwConfig` (``None`` when the config lacks it)."""
    node = hw
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        else:
            node = getattr(node, part, None)
        if node is None:
            return None
    return dict(node) if isinstance(node, dict) else node


def program_hw(hw: HwConfig) -> dict:
    """The projection of ``hw`` that determines compiled programs: path -> value."""
    return {path: _lookup(hw, path) for path in PROGRAM_HW_FIELDS}


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of pimgpt's version and the source of the compiler's layers (``core``, ``sw``).

    Any edit to the compiler, the mapper or the instruction set changes it, so a cache never
    serves a program an older compiler made.
    """
    import pimgpt.core
    import pimgpt.sw

    h = hashlib.sha256(pimgpt.__version__.encode())
    for pkg in (pimgpt.core, pimgpt.sw):
        root = Path(pkg.__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def program_key(cfg: ModelConfig, hw: HwConfig, context: int, schedule: str = "pipelined") -> str:
    """Content hash of everything a compiled decode step depends on.

    Parameters
    ----------
    cfg : ModelConfig
    hw : HwConfig
    context : int
        Tokens attended by the decode step.
    schedule : str
        Compiler schedule (see :func:`pimgpt.sw.compiler.compile_decode_step`).

    Returns
    -------
    str
        64 hex digits.
    """
    material = {
        "kind": "decode_step",
        "model": model_fingerprint(cfg),
        "context": context,
        "schedule": schedule,
        "hw": program_hw(hw),
        "code": code_fingerprint(),
    }
    text = json.dumps(material, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _rle(tags: list) -> list:
    """Run-length form of the instruction tags (consecutive instructions share tags)."""
    runs: list = []
    for tag in tags:
        if runs and runs[-1][0] == tag:
            runs[-1][1] += 1
        else:
            runs.append([tag, 1])
    return runs


class ProgramCache:
    """Compiled programs on disk by :func:`program_key`.

    Parameters
    ----------
    root : path, optional
        Cache folder (default :func:`pimgpt.core.fileio.cache_dir`); programs go in
        ``root/programs``.
    """

    def __init__(self, root: str | Path | None = None):
        self.dir = Path(root) / "programs" if root is not None else cache_dir("programs")

    def _paths(self, key: str) -> tuple[Path, Path]:
        sub = self.dir / key[:2]
        return sub / f"{key}.bin", sub / f"{key}.json"

    def get(self, key: str) -> tuple[list, list, dict | None] | None:
        """``(program, tags, plan)`` stored under ``key`` (``plan``: the step's attention plan,
        :func:`pimgpt.sw.compiler.attention_plan`, or ``None``), or ``None`` (missing or damaged
        entry)."""
        bin_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            blob = bin_path.read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            return None
        try:
            program = decode(blob, source=str(bin_path))
            tags = [tag for tag, count in meta["tags"] for _ in range(count)]
            plan = meta.get("plan")
        except (PimgptError, KeyError, TypeError, ValueError):
            return None
        if len(tags) != len(program) or not isinstance(plan, dict | None):
            return None
        return program, tags, plan

    def put(self, key: str, program: list, tags: list, plan: dict | None = None) -> None:
        """Store a program (and its step's attention plan); the metadata is written last, so
        readers never see half an entry."""
        blob = encode(program)
        bin_path, meta_path = self._paths(key)
        try:
            atomic_write(bin_path, lambda tmp: tmp.write_bytes(blob))
            meta = {"sha256": hashlib.sha256(blob).hexdigest(), "instructions": len(program),
                    "tags": _rle(tags), "plan": plan}
            atomic_write_text(meta_path, json.dumps(meta, separators=(",", ":")))
        except PimgptError as exc:
            raise ProgramCacheError(
                f"program cache {self.dir}: {exc}; set {CACHE_ENV} to a writable directory"
            ) from None


def compile_decode_step_cached(cfg: ModelConfig, hw: HwConfig, context: int,
                               cache: ProgramCache | None) -> tuple[list, list, bool, dict | None]:
    """Compile one decode step, or take it from ``cache``.

    Returns
    -------
    program : list of Instr
    tags : list of str
    hit : bool
        Whether the program came from the cache.
    plan : dict or None
        The step's attention plan (:func:`pimgpt.sw.compiler.attention_plan`), kept with the
        program in the cache.
    """
    from pimgpt.sw.compiler import attention_plan, compile_decode_step

    key = program_key(cfg, hw, context) if cache is not None else None
    if cache is not None:
        found = cache.get(key)
        if found is not None:
            return found[0], found[1], True, found[2]
    comp = compile_decode_step(cfg, hw, context)
    plan = attention_plan(comp)
    if cache is not None:
        cache.put(key, comp.program, comp.tags, plan)
    return comp.program, comp.tags, False, plan
