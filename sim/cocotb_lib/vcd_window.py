"""Cut a window of program cycles out of a system run's VCD (``pimgpt run --waves-window``).

Verilator traces a cocotb run from its first cycle to its last (the simulator's main loop has
no switch for it), GBs for a short generation; a window is cut from the whole dump afterwards,
streaming, in one pass. The window is in program cycles, the numbering of the system's
``cycles`` counter (0 at ``START``), which the RTL backend's ``--commands`` CSV, its Perfetto
timeline and its statistics use too: the cut starts at the first time step where ``cycles`` is
at least ``first`` and stops before the first where it is past ``last``. The cut file has the
whole header (every signal), then at its first time step a ``$dumpvars`` with the value every
signal has there, then the changes inside the window.
"""

from __future__ import annotations

from pathlib import Path

from pimgpt.core.errors import PimgptError

__all__ = ["VcdWindowError", "crop_vcd", "parse_window"]

#: The system top level's program-cycle counter (``pimgpt.hdl.system.System.cycles``).
CYCLE_SIGNAL = "cycles"


class VcdWindowError(PimgptError):
    """The window or the dump cannot be used; the message says why."""


def parse_window(text: str) -> tuple[int, int]:
    """``"FIRST:LAST"`` (program cycles, both included) -> ``(first, last)``."""
    first, sep, last = str(text).partition(":")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise VcdWindowError(f"--waves-window {text!r}: give FIRST:LAST program cycles, e.g. "
                             "--waves-window 1000:2000")
    a, b = int(first), int(last)
    if a > b:
        raise VcdWindowError(f"--waves-window {text!r}: the first cycle is after the last")
    return a, b


def _cycle_id(header: list[str]) -> str:
    """The identifier code of the shallowest ``cycles`` variable of the header."""
    depth, best = 0, None
    for line in header:
        tok = line.split()
        for i, t in enumerate(tok):
            if t == "$scope":
                depth += 1
            elif t == "$upscope":
                depth -= 1
            elif t == "$var" and len(tok) >= i + 5 and tok[i + 4] == CYCLE_SIGNAL:
                if best is None or depth < best[0]:
                    best = (depth, tok[i + 3])
    if best is None:
        raise VcdWindowError(f"the waveform has no '{CYCLE_SIGNAL}' signal to count program "
                             "cycles by; is it a dump of `pimgpt run --backend rtl`?")
    return best[1]


def _change(line: str) -> tuple[str, str] | None:
    """``(identifier, value token)`` of a value-change line, ``None`` for anything else."""
    line = line.strip()
    c = line[:1]
    if c in "01xzXZ" and len(line) > 1:
        return line[1:], c
    if c in "bBrRsS":
        value, _, ident = line.partition(" ")
        return (ident, value) if ident else None
    return None


def _emit(value: str, ident: str) -> str:
    return f"{value}{ident}\n" if value[:1] in "01xzXZ" else f"{value} {ident}\n"


def crop_vcd(src, dst, first: int, last: int) -> int:
    """Write the program cycles ``[first, last]`` of the VCD ``src`` to ``dst``.

    Returns
    -------
    int
        The program cycles the cut covers (``last - first + 1`` where the run lasted).

    Raises
    ------
    VcdWindowError
        If ``src`` has no ``cycles`` signal, or the run ended before cycle ``first``.
    """
    header: list[str] = []
    values: dict[str, str] = {}
    ident = None
    opened = False
    time_line = None
    block: list[str] = []
    span = [first, first]  # the first and the latest program cycle written
    with open(src, encoding="ascii", errors="replace") as f, open(dst, "w") as out:

        def flush() -> bool:
            """Apply the block of ``time_line``; write it if inside the window. False: past."""
            nonlocal opened
            for line in block:
                ch = _change(line)
                if ch is not None:
                    values[ch[0]] = ch[1]
            raw = values.get(ident, "b0")
            try:
                now = int(raw[1:], 2) if raw[:1] in "bB" else int(raw)
            except ValueError:  # x or z bits before reset
                now = -1
            if now > last:
                return False
            if now >= first:
                if not opened:
                    span[0] = now
                    out.writelines(header)
                    out.write(time_line)
                    out.write("$dumpvars\n")
                    out.writelines(_emit(v, k) for k, v in values.items())
                    out.write("$end\n")
                    opened = True
                else:
                    out.write(time_line)
                    out.writelines(block)
                span[1] = now
            return True

        for line in f:
            if ident is None:
                header.append(line)
                if "$enddefinitions" in line:
                    ident = _cycle_id(header)
                continue
            if line.startswith("#"):
                if time_line is None:  # the initial $dumpvars before the first time step
                    values.update(ch for ch in map(_change, block) if ch is not None)
                elif not flush():
                    break
                time_line, block = line, []
            elif not line.startswith("$") or _change(line) is not None:
                block.append(line)
        else:
            if time_line is not None:
                flush()
    if not opened:
        Path(dst).unlink(missing_ok=True)
        raise VcdWindowError(f"--waves-window {first}:{last}: the program ended before cycle "
                             f"{first}; choose a window inside its cycles")
    return span[1] - span[0] + 1
