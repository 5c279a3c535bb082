"""The text form of the pimgpt ISA (:mod:`pimgpt.core.isa`): ``OPNAME key=value ...`` lines.

``pimgpt compile`` writes every field of every instruction (:meth:`~pimgpt.core.isa.Instr.to_text`)
and ``flags=`` only when nonzero, so :func:`parse_asm` requires each field that has no default in
:data:`~pimgpt.core.isa.SPEC` and a compiled ``program.asm`` parses back to the same instructions
(and the same ``program.bin`` bytes). ``docs/isa.md`` ("Program files") shows the syntax.
"""

from __future__ import annotations

from pimgpt.core.isa import SPEC, Instr, Op, ProgramError, check_complete, f32_bits

__all__ = ["to_asm", "parse_asm"]


def to_asm(program: list[Instr]) -> str:
    """Assembly text for a program, one instruction per line."""
    return "".join(ins.to_text() + "\n" for ins in program)


def _parse_line(name: str, pairs: list, where: str) -> Instr:
    """One instruction of assembly: every field of the opcode that has no default is given
    (:meth:`Instr.to_text` writes them all) and the SPEC's ``nonzero`` fields are at least 1."""
    try:
        op = Op[name.upper()]
    except KeyError:
        raise ProgramError(f"{where}: unknown instruction {name!r}; use one of the opcodes of "
                           "docs/isa.md") from None
    args, flags, seen = {}, 0, set()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ProgramError(f"{where}: expected key=value, got {pair!r}")
        if key in seen:
            raise ProgramError(f"{where}: field {key!r} given twice; keep one")
        seen.add(key)
        try:
            if key == "flags":
                flags = int(value, 0)
            elif key.endswith("_f32"):
                is_bits = value.lower().startswith("0x")
                args[key] = int(value, 16) if is_bits else f32_bits(float(value))
            else:
                args[key] = int(value, 0)
        except ValueError:
            raise ProgramError(f"{where}: bad value {pair!r}; write an integer (0x.. for hex), "
                               "a float for *_f32 fields") from None
    try:
        ins = Instr(op, args, flags)
    except ProgramError as exc:
        raise ProgramError(f"{where}: {exc}") from None
    spec = SPEC[op]
    missing = [n for n in spec.fields if n not in args and n not in spec.defaults]
    if missing:
        given = " ".join(f"{n}=..." for n in missing)
        raise ProgramError(f"{where}: {op.name} lacks {', '.join(missing)}; add {given} "
                           f"(its fields: {' '.join(spec.fields)})")
    zero = [n for n in spec.nonzero if ins[n] == 0]
    if zero:
        raise ProgramError(f"{where}: {op.name} {zero[0]}=0; {zero[0]} must be at least 1")
    return ins


def parse_asm(text: str, source: str = "program.asm", complete: bool = True) -> list[Instr]:
    """Parse assembly text (the text form; see the module docstring and ``docs/isa.md``).

    Parameters
    ----------
    text : str
        One instruction a line, ``OPNAME key=value ... [flags=0x..]``; ``#`` starts a comment.
        Every field without a SPEC default must be given; mnemonics may be lowercase.
    source : str
        The file name, for messages.
    complete : bool
        Require a whole program, ending with ``EOC`` (False: a fragment of instructions).

    Returns
    -------
    list of Instr

    Raises
    ------
    ProgramError
        One line naming ``source:line``, the problem and the fix.
    """
    program = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            name, *pairs = line.split()
            program.append(_parse_line(name, pairs, f"{source}:{lineno}"))
    if complete:
        check_complete(program, source)
    return program
