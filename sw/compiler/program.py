"""A compiled program, its text and file forms, and the placement of ``SYNC``\\ s.

The hardware overlaps PIM-side and ASIC-side instructions between ``SYNC``\\ s (``docs/isa.md``,
"Ordering"). Which scratchpad words and scalar registers an instruction reads and writes comes from
the ISA's metadata (:func:`effects`); from it :func:`hazards` finds the instructions that would
race with the other side, and :class:`Builder` inserts a ``SYNC`` right before an instruction that
reads what the other side writes, or writes what it reads or writes (RAW, WAR, WAW) since the
last ``SYNC``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pimgpt.core import isa
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import Instr, Op, encode
from pimgpt.sw.mapper import MemoryMap


class CompileError(PimgptError):
    """A model, prompt or hardware that cannot be compiled; the message says why and what to do."""


#: Scalar register holding the current token.
TOKEN_REG = 0
#: Tag of the preamble's instructions (resident parameters loaded once per generation).
PREAMBLE_TAG = "preamble"


def preamble_length(tags: list) -> int:
    """Instructions of the preamble at the start of a program with these tags (0 if none): the
    first step starts there."""
    n = 0
    for tag in tags:
        if tag != PREAMBLE_TAG:
            break
        n += 1
    return n
#: Flat hazard address of scalar register r: REG_BASE + r (beyond every 32-bit scratchpad word).
REG_BASE = 1 << 33


# ---------------------------------------------------------------------------------------------
# What an instruction touches
# ---------------------------------------------------------------------------------------------
def effects(ins: Instr, banks: int) -> tuple[bool, list, list]:
    """``(is_pim, reads, writes)``: :func:`pimgpt.core.isa.effects` as half-open ranges of one
    flat address space, scalar register ``r`` at ``REG_BASE + r``."""
    side, reads, writes = isa.effects(ins, banks)

    def flat(ranges):
        return [(lo + REG_BASE, hi + REG_BASE) if space == "reg" else (lo, hi)
                for space, lo, hi in ranges]
    return side is isa.Side.PIM, flat(reads), flat(writes)


class _Ranges:
    """A set of half-open ranges with a bounding box for quick rejection."""

    __slots__ = ("items", "lo", "hi")

    def __init__(self):
        self.clear()

    def clear(self):
        self.items: list = []
        self.lo = math.inf
        self.hi = -math.inf

    def add(self, lo: int, hi: int) -> None:
        if lo >= hi:
            return
        items = self.items
        if items and items[-1][1] == lo:  # consecutive RD_MACs: extend the last range
            items[-1] = (items[-1][0], hi)
        else:
            items.append((lo, hi))
        self.lo = min(self.lo, lo)
        self.hi = max(self.hi, hi)

    def hits(self, lo: int, hi: int) -> bool:
        if lo >= hi or hi <= self.lo or lo >= self.hi:
            return False
        return any(a < hi and lo < b for a, b in self.items)


class _Pending:
    """Words each side has read and written since the last ``SYNC``."""

    def __init__(self):
        self.sides = {True: (_Ranges(), _Ranges()), False: (_Ranges(), _Ranges())}

    def clear(self) -> None:
        for reads, writes in self.sides.values():
            reads.clear()
            writes.clear()

    def races(self, pim: bool, reads: list, writes: list) -> bool:
        """Would an instruction of side ``pim`` touching these ranges race with the other side?"""
        other_r, other_w = self.sides[not pim]
        return any(other_w.hits(lo, hi) for lo, hi in reads) or any(
            other_r.hits(lo, hi) or other_w.hits(lo, hi) for lo, hi in writes)

    def add(self, pim: bool, reads: list, writes: list) -> None:
        mine_r, mine_w = self.sides[pim]
        for lo, hi in reads:
            mine_r.add(lo, hi)
        for lo, hi in writes:
            mine_w.add(lo, hi)


def hazards(program: list[Instr], banks: int) -> list[int]:
    """Indices of instructions that would race with the other side (no ``SYNC`` in between).

    Used to check compiled programs: the result must be empty.
    """
    pend = _Pending()
    bad = []
    for index, ins in enumerate(program):
        if ins.op is Op.SYNC:
            pend.clear()
            continue
        pim, reads, writes = effects(ins, banks)
        if pend.races(pim, reads, writes):
            bad.append(index)
        pend.add(pim, reads, writes)
    return bad


class Builder:
    """Appends instructions with their tags, inserting a ``SYNC`` before every instruction that
    races with the other side (:func:`hazards` of the result is empty)."""

    def __init__(self, banks: int):
        self.banks = banks
        self.program: list[Instr] = []
        self.tags: list[str] = []
        self.tag = ""
        self._pend = _Pending()

    def sync(self, tag: str | None = None) -> None:
        self.program.append(Instr(Op.SYNC))
        self.tags.append(self.tag if tag is None else tag)
        self._pend.clear()

    def append(self, ins: Instr, tag: str) -> None:
        """Append ``ins`` (a ``SYNC`` first if it races with the other side)."""
        pim, reads, writes = effects(ins, self.banks)
        if self._pend.races(pim, reads, writes):
            self.sync(tag)
        self._pend.add(pim, reads, writes)
        self.program.append(ins)
        self.tags.append(tag)

    def emit(self, op: Op, flags: int = 0, **fields) -> None:
        self.append(Instr(op, fields, flags), self.tag)


class Recorder:
    """Records instructions and tags in program order, without any ``SYNC`` (a schedule places
    them afterwards); the lowering's view of a builder."""

    def __init__(self):
        self.program: list[Instr] = []
        self.tags: list[str] = []
        self.tag = ""

    def emit(self, op: Op, flags: int = 0, **fields) -> None:
        self.program.append(Instr(op, fields, flags))
        self.tags.append(self.tag)

    def take(self) -> tuple[list, list]:
        """The recording so far; starts a new one."""
        out = self.program, self.tags
        self.program, self.tags = [], []
        return out


# ---------------------------------------------------------------------------------------------
# Compiled program
# ---------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One model step in a compiled program."""

    start: int  # index of its first instruction
    pos: int
    token: int | None  # prompt token, or None when the token comes from the previous ARGMAX
    logits: bool
    #: The attention plan the compiler chose for the step (``Lowering.step_plan``), or None
    plan: dict | None = None


@dataclass
class CompiledProgram:
    """A compiled program plus what tools need to interpret it.

    Attributes
    ----------
    program : list of Instr
    memmap : MemoryMap
    tags : list of str
        Parallel to ``program``: ``L3.attn.qkv``, ``L3.attn.score``, ``lm_head``, ...
    scratchpad_words_used : int
    steps : list of Step
        The model steps; instructions before ``steps[0].start`` are the preamble (tag
        ``preamble``: resident parameters loaded once per generation, then a ``SYNC``).
    schedule : str
        ``"pipelined"`` or ``"serial"`` (see :func:`pimgpt.sw.compiler.compile_generation`).
    """

    program: list
    memmap: MemoryMap
    tags: list
    scratchpad_words_used: int
    steps: list = field(default_factory=list)
    schedule: str = "pipelined"

    def encode(self) -> bytes:
        """``program.bin`` contents."""
        return encode(self.program)

    def to_asm(self) -> str:
        """``program.asm``: assembly with comments at step and tag boundaries."""
        starts = {s.start: s for s in self.steps}
        lines, last = [], None
        for index, (ins, tag) in enumerate(zip(self.program, self.tags, strict=True)):
            if index in starts:
                s = starts[index]
                src = f"token {s.token}" if s.token is not None else f"token R{TOKEN_REG}"
                lines.append(f"# step pos={s.pos} {src}{' logits' if s.logits else ''}")
            if tag != last:
                lines.append(f"# {tag}")
                last = tag
            lines.append(ins.to_text())
        return "\n".join(lines) + "\n"

    def to_aim(self) -> str:
        """``program.aim``: the AiM trace (see :mod:`pimgpt.sw.aim`)."""
        from pimgpt.sw.aim import to_aim

        return to_aim(self.program, self.memmap.hw, header=f"{self.memmap.cfg.name}")

    def tag_counts(self, level: str = "kind") -> Counter:
        """Instruction counts per tag: ``level='kind'`` drops the layer (``attn.qkv``), ``'layer'``
        keeps only it (``L3``), ``'tag'`` the full tag."""
        def key(tag: str) -> str:
            if level == "tag":
                return tag
            head, _, rest = tag.partition(".")
            is_layer = head.startswith("L") and head[1:].isdigit()
            if level == "layer":
                return head if is_layer else tag
            return rest if is_layer else tag
        return Counter(key(t) for t in self.tags)

    def write(self, directory: str | Path, outputs=None) -> dict[str, Path]:
        """Write program.bin, program.asm, program.aim and memmap.yaml into ``directory``.

        ``memmap.yaml`` carries the fingerprint of the model, hardware and program
        (:mod:`pimgpt.sw.fingerprint`). All files are committed together or not at all
        (:class:`pimgpt.core.fileio.Outputs`; pass ``outputs`` from :func:`program_outputs` to
        have the destinations checked before compiling).
        """
        import yaml

        from pimgpt.sw.fingerprint import fingerprint

        outs = outputs if outputs is not None else program_outputs(directory)
        blob = self.encode()
        stamp = {"fingerprint": fingerprint(self.memmap.cfg, self.memmap.hw, blob)}
        contents = {
            "program.bin": blob,
            "program.asm": self.to_asm().encode(),
            "program.aim": self.to_aim().encode(),
            "memmap.yaml": (self.memmap.to_yaml() + yaml.safe_dump(stamp)).encode(),
        }
        with outs:
            for name, data in contents.items():
                outs.write_bytes(name, data)
            return outs.commit()


#: The files ``pimgpt compile`` writes.
PROGRAM_FILES = ("program.bin", "program.asm", "program.aim", "memmap.yaml")


def program_outputs(directory: str | Path, opt: str = "-o"):
    """:class:`~pimgpt.core.fileio.Outputs` for :data:`PROGRAM_FILES` in ``directory``, checked."""
    from pimgpt.core.fileio import Outputs, check_directory

    directory = check_directory(opt, directory)
    return Outputs({name: directory / name for name in PROGRAM_FILES}, label=f"{opt} {directory}")
