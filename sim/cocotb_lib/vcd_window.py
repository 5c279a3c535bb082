"""Cut a window of program cycles out of a system run's VCD (``pimgpt run --waves-window``).

Verilator traces a cocotb run from its first cycle to its last (the simulator's main loop has
no switch for it), GBs for a short generation; a window is cut from the whole dump afterwards,
streaming, in one pass. The window is in program cycles, the numbering of the system's
``cycles`` counter, which the RTL backend's ``--commands`` CSV, its Perfetto timeline and its
statistics use too. The counter is 0 from reset through the loading of the DRAM image and
stops when the program is done, so only the time steps where the system's ``running`` is 1
count: the cut starts at the first such step where ``cycles`` is at least ``first`` and stops
before the first where ``cycles`` is past ``last`` or the program has ended. The cut file has
the whole header (every signal), then at its first time step a ``$dumpvars`` with the value
every signal has there, then the changes inside the window.
"""

from __future__ import annotations

from pathlib import Path

from pimgpt.core.errors import PimgptError

__all__ = ["VcdWindowError", "crop_vcd", "parse_window"]

#: The system top level's program-cycle counter and run flag (``pimgpt.hdl.system.System``).
CYCLE_SIGNAL, RUN_SIGNAL = "cycles", "running"
#: Latin-1 maps every byte to one character and back: the cut copies the dump's bytes as they are.
_ENCODING = "latin-1"


class VcdWindowError(PimgptError):
    """The window or the dump cannot be used; the message says why."""


def parse_window(text: str) -> tuple[int, int]:
    """Parse ``--waves-window``.

    Parameters
    ----------
    text : str
        ``"FIRST:LAST"``, program cycles, both included.

    Returns
    -------
    (int, int)
        ``(first, last)``.

    Raises
    ------
    VcdWindowError
        Naming the expected form, or a first cycle after the last.
    """
    first, sep, last = str(text).partition(":")
    first, last = first.strip(), last.strip()
    if not sep or not (first.isascii() and first.isdecimal()) \
            or not (last.isascii() and last.isdecimal()):
        raise VcdWindowError(f"--waves-window {text!r}: give FIRST:LAST program cycles, e.g. "
                             "--waves-window 1000:2000")
    a, b = int(first), int(last)
    if a > b:
        raise VcdWindowError(f"--waves-window {text!r}: the first cycle is after the last")
    return a, b


def _var_ids(header: list[str]) -> dict[str, str]:
    """The identifier codes of the shallowest ``cycles`` and ``running`` variables."""
    depth, best = 0, {}
    for line in header:
        tok = line.split()
        for i, t in enumerate(tok):
            if t == "$scope":
                depth += 1
            elif t == "$upscope":
                depth -= 1
            elif t == "$var" and len(tok) >= i + 5 and tok[i + 4] in (CYCLE_SIGNAL, RUN_SIGNAL):
                name = tok[i + 4]
                if name not in best or depth < best[name][0]:
                    best[name] = (depth, tok[i + 3])
    missing = [n for n in (CYCLE_SIGNAL, RUN_SIGNAL) if n not in best]
    if missing:
        raise VcdWindowError(f"the waveform has no '{missing[0]}' signal to count program "
                             "cycles by; is it a dump of `pimgpt run --backend rtl`?")
    return {name: code for name, (_d, code) in best.items()}


def _change(line: str) -> tuple[str, str] | None:
    """``(identifier, value token)`` of a value-change line, ``None`` for anything else."""
    parts = line.split()
    if not parts:
        return None
    c = parts[0][:1]
    if len(parts) == 1 and c in "01xzXZ" and len(parts[0]) > 1:
        return parts[0][1:], c
    if len(parts) == 2 and c in "bBrRsS":
        return parts[1], parts[0]
    return None


def _emit(value: str, ident: str) -> str:
    return f"{value}{ident}\n" if value[:1] in "01xzXZ" else f"{value} {ident}\n"


def _number(value: str | None) -> int:
    """The integer a value token holds (``-1`` for x or z bits, or no value yet)."""
    if value is None:
        return -1
    try:
        return int(value[1:], 2) if value[:1] in "bB" else int(value)
    except ValueError:
        return -1


class _Cut:
    """The state of one cut: every signal's value, and whether the window is open."""

    def __init__(self, out, header, ids, first, last):
        self.out, self.header, self.first, self.last = out, header, first, last
        self.cyc, self.run = ids[CYCLE_SIGNAL], ids[RUN_SIGNAL]
        self.values: dict[str, str] = {}
        self.span: list[int] | None = None  # program cycles written: [first, latest]

    def apply(self, block) -> None:
        self.values.update(ch for ch in map(_change, block) if ch is not None)

    def step(self, time_line: str, block: list[str]) -> bool:
        """Apply a time step's changes; write it if inside the window. False: past the window."""
        self.apply(block)
        now, running = _number(self.values.get(self.cyc)), _number(self.values.get(self.run))
        if running != 1:
            return self.span is None  # before the program, or it has ended
        if now > self.last:
            return False
        if now < self.first:
            return True
        if self.span is None:
            self.span = [now, now]
            self.out.writelines(self.header)
            self.out.write(time_line)
            self.out.write("$dumpvars\n")
            self.out.writelines(_emit(v, k) for k, v in self.values.items())
            self.out.write("$end\n")
        else:
            self.out.write(time_line)
            self.out.writelines(block)
        self.span[1] = now
        return True


def crop_vcd(src, dst, first: int, last: int) -> int:
    """Write the program cycles ``first..last`` of the VCD ``src`` to ``dst``.

    Parameters
    ----------
    src, dst : path
        The whole dump of a system run, and the file to write.
    first, last : int
        Program cycles (both included; :func:`parse_window`).

    Returns
    -------
    int
        The program cycles the cut covers (``last - first + 1`` where the program ran that far).

    Raises
    ------
    VcdWindowError
        If ``src`` has no ``cycles`` or ``running`` signal or no time steps, or the program ended
        before cycle ``first`` (``dst`` is then not left behind).
    """
    try:
        return _crop(src, dst, first, last)
    except BaseException:
        Path(dst).unlink(missing_ok=True)  # no partial cut is left behind
        raise


def _crop(src, dst, first: int, last: int) -> int:
    header: list[str] = []
    cut = None
    time_line = None
    block: list[str] = []
    with open(src, encoding=_ENCODING) as f, open(dst, "w", encoding=_ENCODING) as out:
        for line in f:
            if cut is None:
                header.append(line)
                if "$enddefinitions" in line:
                    cut = _Cut(out, header, _var_ids(header), first, last)
                continue
            if line.startswith("#"):
                if time_line is None:  # the initial $dumpvars before the first time step
                    cut.apply(block)
                elif not cut.step(time_line, block):
                    break
                time_line, block = line, []
            elif not line.startswith("$") or _change(line) is not None:
                block.append(line)
        else:
            if time_line is not None:
                cut.step(time_line, block)
    if cut is None or time_line is None or cut.span is None:
        if cut is None or time_line is None:
            raise VcdWindowError(f"{src}: the waveform has no time steps; was the run "
                                 "interrupted?")
        raise VcdWindowError(f"--waves-window {first}:{last}: the program ended before cycle "
                             f"{first}; choose a window inside its cycles")
    return cut.span[1] - cut.span[0] + 1
