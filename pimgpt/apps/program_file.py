"""Programs given to ``pimgpt run --program``: the binary or the text form, and its memmap.yaml.

``pimgpt compile`` writes ``program.bin`` and ``program.asm`` (the same instructions in the two
forms of :mod:`pimgpt.core.isa`) beside ``memmap.yaml``. A run reads either form: a file whose
bytes start with the binary magic is decoded, one named ``.asm`` or holding text is parsed (so a
user who edits the assembly can run it without converting it).

``memmap.yaml`` describes the DRAM image the program runs on: the model, the hardware and the
KV-cache capacity (``context``). Its fingerprint (:mod:`pimgpt.sw.fingerprint`) must match the
model shape and the hardware of the run; the program's own hash need not match, because an edited
program for the same model and hardware is still a program for that image. A program that differs
from the one compiled with the memory map is reported as edited (:attr:`LoadedProgram.edited`).
The memory map also gives the run's defaults: its model (``-m``) and its hardware (``--hw``); a
contradicting ``-m`` or ``--hw`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pimgpt.core.errors import PimgptError

__all__ = ["LoadedProgram", "ProgramFileError", "read_program", "read_memmap", "load_program"]


class ProgramFileError(PimgptError):
    """A ``--program`` file, or its memmap.yaml, cannot be run; the message names the fix."""


@dataclass(frozen=True)
class LoadedProgram:
    """A program read for a run.

    Attributes
    ----------
    path : str
        The program file.
    cfg : ModelConfig
    hw : HwConfig
        The model and hardware it runs on.
    compiled : CompiledProgram
        The instructions, the memory map, steps and tags (``preamble`` before the first step).
    prompt : list of int
        The prompt compiled into it (its ``SETR`` immediates).
    edited : bool
        The program differs from the one ``memmap.yaml`` was compiled with.
    """

    path: str
    cfg: object
    hw: object
    compiled: object
    prompt: list
    edited: bool


def _is_text(path: Path, blob: bytes) -> bool:
    """Whether ``blob`` is the text form: named ``.asm`` or text, and not (a prefix of) the
    binary magic, which a truncated binary still starts with."""
    from pimgpt.core.isa import MAGIC

    head = blob[:len(MAGIC)]
    if head == MAGIC or (blob and MAGIC.startswith(head)):
        return False
    if path.suffix.lower() == ".asm":
        return True
    if not blob or b"\0" in blob:  # the binary header holds NULs; an empty file is no text
        return False
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _asm_tags(text: str) -> list:
    """The tag of each instruction of a compiled ``program.asm``: the comment line ``# TAG`` that
    :meth:`~pimgpt.sw.compiler.CompiledProgram.to_asm` writes where the tag changes (``# step``
    lines mark steps, not tags). Perf's summary splits its time by tag (gemv, attention, ...)."""
    tags, tag = [], ""
    for raw in text.splitlines():
        code, _, comment = raw.partition("#")
        if code.strip():
            tags.append(tag)
        elif comment.strip() and not comment.strip().startswith("step "):
            tag = comment.strip().split()[0]
    return tags


def read_program(path) -> tuple[list, bytes, list | None]:
    """The instructions of a ``program.bin`` or ``program.asm``, their binary encoding and, for
    assembly, the tags of its comments (None for a binary, which has none).

    Raises
    ------
    PimgptError
        A missing or unreadable file, a malformed program, or one that does not end with EOC.
    """
    from pimgpt.core.fileio import read_bytes
    from pimgpt.core.isa import check_complete, decode, encode, parse_asm

    p = Path(path)
    blob = read_bytes(path, "program file", ProgramFileError,
                      missing="make a program.bin with `pimgpt compile --prompt ...`")
    if _is_text(p, blob):
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError:
            raise ProgramFileError(f"{path}: the assembly is not UTF-8 text; save it as UTF-8 "
                                   "or run the program.bin") from None
        program = parse_asm(text, source=str(path))
        return program, encode(program), _asm_tags(text)
    program = decode(blob, source=str(path))
    check_complete(program, str(path))
    return program, blob, None


def read_memmap(path) -> tuple[dict, Path]:
    """The parsed ``memmap.yaml`` beside the program ``path``, and its path."""
    import yaml

    from pimgpt.core.fileio import read_text

    p = Path(path)
    mm_file = p.with_name("memmap.yaml")
    text = read_text(mm_file, "memory map", ProgramFileError,
                     missing=f"a compiled program needs the memmap.yaml written beside "
                             f"{p.name} by `pimgpt compile`; keep the files together")
    try:
        info = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ProgramFileError(f"{mm_file}: malformed YAML; recompile") from None
    if not isinstance(info, dict):
        raise ProgramFileError(f"{mm_file}: not a memory map (a mapping); recompile")
    return info, mm_file


def _named(info: dict, key: str, mm_file: Path) -> str:
    name = info.get(key)
    if not isinstance(name, str) or not name:
        raise ProgramFileError(f"{mm_file}: no {key} name; recompile with `pimgpt compile`")
    return name


def _target(info: dict, mm_file: Path, model, hw):
    """The model and hardware of a run of a program with memory map ``info``: those it names,
    or the given ``model``/``hw`` when they agree with it (see :func:`load_program`)."""
    from pimgpt.core.config import load_hw
    from pimgpt.sw.fingerprint import check_fingerprint
    from pimgpt.sw.models import get_model

    want_model, want_hw = _named(info, "model", mm_file), _named(info, "hw", mm_file)
    cfg = _load(get_model, model, want_model, mm_file, "model", "-m")
    if cfg.name != want_model:
        raise ProgramFileError(f"-m {model} contradicts {mm_file}: the program was compiled for "
                               f"model {want_model!r}, not {cfg.name!r}; drop -m")
    hwc = _load(load_hw, hw, want_hw, mm_file, "hardware", "--hw")
    check_fingerprint(info, cfg, hwc, str(mm_file))
    return cfg, hwc


def _load(loader, given, named: str, mm_file: Path, what: str, flag: str):
    """``loader(given)``, or ``loader(named)`` without ``given``: a name from the memory map that
    cannot be loaded is reported naming that file (a given one reports itself)."""
    try:
        return loader(named if given is None else given)
    except PimgptError as exc:
        if given is not None:
            raise
        raise ProgramFileError(f"{mm_file}: {what} {named!r} cannot be loaded ({exc}); pass "
                               f"{flag} with the {what} the program was compiled for") from None


def load_program(path, model: str | None = None, hw: str | None = None) -> LoadedProgram:
    """Read the program ``path`` and its ``memmap.yaml`` for a run.

    Parameters
    ----------
    path : str or Path
        ``program.bin`` or ``program.asm`` (its ``memmap.yaml`` lies beside it).
    model, hw : str, optional
        ``-m`` and ``--hw`` as given (None: those the memory map names).

    Returns
    -------
    LoadedProgram

    Raises
    ------
    PimgptError
        A bad program file (reported first) or memory map; a ``-m`` naming another model than
        the memory map (a model of the same shape, such as tiny for a tiny-py program, would run
        on the wrong weights); a name in the memory map that cannot be loaded; a model or
        hardware whose fingerprint differs; an operand out of range of the hardware.
    """
    from pimgpt.core.isa import FLAG_VEC_FROM_REG, Op
    from pimgpt.core.progcheck import check_program
    from pimgpt.sw.compiler import CompiledProgram, Step
    from pimgpt.sw.compiler.program import PREAMBLE_TAG
    from pimgpt.sw.fingerprint import program_fingerprint
    from pimgpt.sw.mapper import MappingError, map_model

    program, blob, tags = read_program(path)
    info, mm_file = read_memmap(path)
    cfg, hwc = _target(info, mm_file, model, hw)
    # Checked here for every backend: perf does not validate operands itself.
    check_program(program, hwc, str(path), ProgramFileError)
    try:
        memmap = map_model(cfg, hwc, info.get("context"))
    except MappingError as exc:
        raise ProgramFileError(f"{mm_file}: {exc}") from None
    # Every compiled step reads its token embedding by register once: that marks the steps. The
    # first steps feed the prompt (one SETR each, its token); a step that ends in ARGMAX makes
    # logits. Perf's summary splits prefill from decode by them.
    prompt = [ins["imm"] for ins in program if ins.op is Op.SETR]
    starts = [i for i, ins in enumerate(program)
              if ins.op is Op.RD_VEC and ins.flags & FLAG_VEC_FROM_REG]
    ends = starts[1:] + [len(program)]
    steps = [Step(start, pos, prompt[pos] if pos < len(prompt) else None,
                  any(ins.op is Op.ARGMAX for ins in program[start:end]))
             for pos, (start, end) in enumerate(zip(starts, ends, strict=True))]
    if tags is None:  # a binary has no tags: the instructions before the first step are preamble
        n_pre = starts[0] if starts else 0
        tags = [PREAMBLE_TAG] * n_pre + [""] * (len(program) - n_pre)
    compiled = CompiledProgram(program=program, memmap=memmap, tags=tags,
                               scratchpad_words_used=0, steps=steps)
    stamp = info.get("fingerprint") or {}
    return LoadedProgram(str(path), cfg, hwc, compiled, prompt,
                         stamp.get("program") != program_fingerprint(blob))
