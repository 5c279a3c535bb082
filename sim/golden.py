"""The golden functional simulator: executes pimgpt programs with ``docs/isa.md`` semantics.

Arithmetic is exactly ``pimgpt/core/numerics.py`` (bf16 storage, exact products, fp32 RNE/FTZ
sums) and ``pimgpt/core/nonlinear.py`` (vector-unit functions). Instructions run in program
order; ``SYNC`` is a no-op here (ordering only matters to timing models).

MAC speed. A MAC step is 16 exact bf16 products, a pairwise fp32 adder tree and an fp32
accumulation. For the bulk of a ``MAC_ABK`` (all banks x all columns) the simulator computes the
products and trees with plain IEEE float32 numpy arithmetic, which is bit-identical to the contract
whenever no intermediate value can be subnormal: every product of two bf16 values with biased
exponents ``Ea, Eb`` is a multiple of ``2**(Ea + Eb - 268)``, and so is every sum of such values,
so if ``Ea + Eb >= 142`` (and no operand is subnormal) every non-zero intermediate has magnitude
``>= 2**-126`` and flush-to-zero never triggers; Inf/NaN propagate identically and NaNs are made
canonical at the end. The simulator keeps the minimum exponent of every DRAM row and of each
global buffer, checks the condition per MAC and otherwise falls back to
:func:`pimgpt.core.numerics.mac_columns`.

The DRAM image (``uint16 [channels, banks, rows, row_elems]``) may cover only the rows a memory map
uses; it grows (zero-filled) if a program touches rows beyond it, up to the hardware's row count.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import FLAG_VEC_FROM_REG, N_REGS, Op, decode
from pimgpt.core.numerics import (
    bf16_to_f32,
    f32_argmax,
    f32_argmax_continue,
    f32_from_bits,
    f32_to_bf16,
    mac_columns,
)
from pimgpt.core.progcheck import check_program
from pimgpt.sw.mapper import COL, element_address

from .golden_vu import VectorOps

_UNKNOWN = np.uint16(0xFFFF)  # row exponent minimum not yet computed
_NAN = f32_from_bits(np.uint32(0x7FC00000))


class GoldenError(PimgptError):
    """A program did something invalid (address out of range, missing EOC, ...)."""


def _min_exponent(bits16: np.ndarray, axis=None) -> np.ndarray:
    """Minimum biased exponent over the non-zero bf16 values (255 if all are +-0)."""
    bits16 = np.asarray(bits16, dtype=np.uint16)
    exp = (bits16 >> np.uint16(7)) & np.uint16(0xFF)
    exp = np.where((bits16 & np.uint16(0x7FFF)) != 0, exp, np.uint16(255))
    return exp.min(axis=axis) if exp.size else np.uint16(255)


def _widen(bits16: np.ndarray) -> np.ndarray:
    """bf16 -> float32 by placing the bits (no flushing; callers guarantee no subnormals)."""
    return (bits16.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _tree(products: np.ndarray) -> np.ndarray:
    """The 16-lane pairwise adder tree over the last axis, plain float32 (no flushing)."""
    p = products
    while p.shape[-1] > 1:
        p = p[..., 0::2] + p[..., 1::2]
    return p[..., 0]


class GoldenMachine(VectorOps):
    """Machine state of ``docs/isa.md`` and an interpreter for programs.

    Parameters
    ----------
    hw : HwConfig
        Hardware (DRAM geometry, scratchpad size).
    dram_image : numpy.ndarray, optional
        ``uint16 [channels, banks, rows, row_elems]`` DRAM contents; used in place (not copied).
        Default: empty (zero) DRAM.

    Attributes
    ----------
    out : list of int
        The output token stream.
    logits : list of numpy.ndarray
        Copies of the vectors each ``ARGMAX`` scanned (the logits of generation programs).
    """

    def __init__(self, hw: HwConfig, dram_image: np.ndarray | None = None):
        d = hw.dram
        self.hw = hw
        self.C, self.B, self.re, self.G = d.channels, d.banks, d.row_elems, d.gb_elems
        self.rows = d.rows
        if dram_image is None:
            dram_image = np.zeros((self.C, self.B, 0, self.re), dtype=np.uint16)
        img = dram_image
        if (not isinstance(img, np.ndarray) or img.dtype != np.uint16 or img.ndim != 4
                or img.shape[:2] != (self.C, self.B) or img.shape[3] != self.re
                or img.shape[2] > self.rows):
            shape = getattr(img, "shape", None)
            raise GoldenError(
                f"DRAM image must be uint16 [{self.C}, {self.B}, <= {self.rows}, {self.re}] for hw "
                f"{hw.name}, got {getattr(img, 'dtype', type(img).__name__)} {shape}"
            )
        self.dram = img
        self.row_emin = np.full(img.shape[:3], _UNKNOWN, dtype=np.uint16)
        self.spw = hw.asic.scratchpad_words
        self.sp = np.zeros(self.spw, dtype=np.float32)
        self.gb = np.zeros((self.C, self.G), dtype=np.uint16)
        self.gb32 = np.zeros((self.C, self.G), dtype=np.float32)
        self.gb_emin = np.full(self.C, 255, dtype=np.int64)
        self.A = d.accumulators
        self.acc = np.zeros((self.C, self.B, self.A), dtype=np.float32)
        self.regs = [0] * N_REGS
        self.out: list[int] = []
        self.logits: list[np.ndarray] = []
        self.counts: Counter = Counter()
        self.mac_cols = 0  # bank-column MAC steps
        self.fast_macs = 0
        self.slow_macs = 0
        self._pc = 0
        self._chan_cache: dict = {}
        self._dispatch = {op: getattr(self, "_" + op.name.lower()) for op in Op}

    # ---- errors and address checks ------------------------------------------------------------
    def _fail(self, msg: str):
        raise GoldenError(f"instruction {self._pc} ({self._op.name}): {msg}")

    def _sp_range(self, addr: int, n: int, what: str = "scratchpad") -> slice:
        if addr + n > self.spw:
            self._fail(f"{what} words [{addr}, {addr + n}) exceed the {self.spw}-word scratchpad")
        return slice(addr, addr + n)

    def _channels(self, mask: int):
        hit = self._chan_cache.get(mask)
        if hit is not None:
            return hit
        if mask == 0 or mask >> self.C:
            self._fail(f"ch_mask {mask:#x} selects no channel or one beyond the {self.C} channels")
        chs = [c for c in range(self.C) if mask >> c & 1]
        if chs[-1] - chs[0] + 1 == len(chs):
            hit = slice(chs[0], chs[-1] + 1), len(chs)
        else:
            hit = np.array(chs), len(chs)
        self._chan_cache[mask] = hit
        return hit

    def _check_bank(self, bank: int) -> None:
        if bank >= self.B:
            self._fail(f"bank {bank} out of range (hw has {self.B} banks per channel)")

    def _check_ch(self, ch: int) -> None:
        if ch >= self.C:
            self._fail(f"channel {ch} out of range (hw has {self.C} channels)")

    def _ensure_rows(self, end_row: int) -> None:
        """Make rows ``< end_row`` addressable (grow the image with zeros)."""
        if end_row > self.rows:
            self._fail(f"row {end_row - 1} out of range (hw has {self.rows} rows per bank)")
        have = self.dram.shape[2]
        if end_row > have:
            new = max(end_row, min(self.rows, 2 * have))
            grown = np.zeros((self.C, self.B, new, self.re), dtype=np.uint16)
            grown[:, :, :have] = self.dram
            self.dram = grown
            emin = np.full((self.C, self.B, new), _UNKNOWN, dtype=np.uint16)
            emin[:, :, :have] = self.row_emin
            self.row_emin = emin

    def _cols(self, col: int, ncols: int, what: str = "row") -> slice:
        limit = self.re // COL if what == "row" else self.G // COL
        if ncols == 0 or col + ncols > limit:
            self._fail(f"columns [{col}, {col + ncols}) do not fit a {what} of {limit} columns")
        return slice(col * COL, (col + ncols) * COL)

    # ---- running ----------------------------------------------------------------------------
    def run(self, program, step_starts=(), on_step: Callable[[int], None] | None = None,
            source: str = "program") -> dict:
        """Execute ``program`` (list of Instr, or the binary form) up to its ``EOC``.

        Parameters
        ----------
        program : list of Instr or bytes
        step_starts : sequence of int
            Instruction indices at which model steps begin (for ``on_step``).
        on_step : callable, optional
            Called with the step number each time one begins.
        source : str
            Name used in error messages for a binary program.

        Returns
        -------
        dict
            Statistics: ``instructions``, ``ops`` (count per opcode), ``mac_columns``,
            ``fast_macs``, ``slow_macs``, ``tokens``, ``seconds``.
        """
        if isinstance(program, (bytes, bytearray)):
            program = decode(bytes(program), source=source)
        # Every operand against this hardware first: no instruction starts work it cannot finish.
        check_program(program, self.hw, source, GoldenError)
        starts = {s: k for k, s in enumerate(step_starts)}
        t0 = time.perf_counter()
        dispatch = self._dispatch
        executed = 0
        done = False
        for pc, ins in enumerate(program):
            if on_step is not None and pc in starts:
                on_step(starts[pc])
            self._pc, self._op = pc, ins.op
            executed += 1
            if ins.op is Op.EOC:
                done = True
                break
            dispatch[ins.op](ins.args, ins.flags)
        if not done:
            raise GoldenError(
                f"{source} ended after {len(program)} instructions without EOC; it is truncated "
                "(recompile it)"
            )
        counts = Counter(ins.op.name for ins in program[:executed])
        self.counts.update(counts)
        return {
            "instructions": executed,
            "ops": dict(sorted(counts.items())),
            "mac_columns": self.mac_cols,
            "fast_macs": self.fast_macs,
            "slow_macs": self.slow_macs,
            "tokens": list(self.out),
            "seconds": time.perf_counter() - t0,
        }

    # ---- PIM side ---------------------------------------------------------------------------
    def _wr_gb(self, a, flags):
        chs, _ = self._channels(a["ch_mask"])
        cols = self._cols(a["gb_col"], a["ncols"], "global buffer")
        src = self._sp_range(a["src"], COL * a["ncols"])
        bits = f32_to_bf16(self.sp[src])
        self.gb[chs, cols] = bits
        self._gb_changed(chs)

    def _gb_changed(self, chs):
        self.gb32[chs] = _widen(self.gb[chs])
        self.gb_emin[chs] = _min_exponent(self.gb[chs], axis=-1)

    def _row_emin(self, chs, banks, row: int) -> int:
        em = self.row_emin[chs, banks, row]
        if np.any(em == _UNKNOWN):
            self.row_emin[chs, banks, row] = _min_exponent(self.dram[chs, banks, row], axis=-1)
            em = self.row_emin[chs, banks, row]
        return int(np.min(em))

    def _check_acc(self, acc: int, n: int = 1) -> None:
        if n == 0 or acc + n > self.A:
            self._fail(f"accumulators [{acc}, {acc + n}) do not exist (hw has {self.A} per bank; "
                       "nacc must be at least 1)")

    def _mac(self, chs, nch: int, banks, row: int, col: int, ncols: int, gb_col: int, k: int):
        self._check_acc(k)
        self._ensure_rows(row + 1)
        dcols = self._cols(col, ncols)
        gcols = self._cols(gb_col, ncols, "global buffer")
        a16 = self.dram[chs, banks, row, dcols]  # (nch, nbanks, ncols*16)
        if a16.ndim == 2:  # a single bank
            a16 = a16[:, None, :]
        nb = a16.shape[1]
        acc = self.acc[chs, banks, k].reshape(nch, nb)
        ea = self._row_emin(chs, banks, row)
        eb = int(np.min(self.gb_emin[chs]))
        acc_bits = acc.view(np.uint32)
        acc_exp = (acc_bits >> np.uint32(23)) & np.uint32(0xFF)
        acc_nz = (acc_bits & np.uint32(0x7FFFFFFF)) != 0
        acc_ok = not np.any(acc_nz & (acc_exp < 24))
        self.mac_cols += nch * nb * ncols
        if ea >= 1 and eb >= 1 and ea + eb >= 142 and acc_ok:
            self.fast_macs += 1
            b32 = self.gb32[chs, gcols][:, None, :]
            with np.errstate(over="ignore", invalid="ignore"):
                prod = (_widen(a16) * b32).reshape(nch, nb, ncols, COL)
                terms = np.empty((nch, nb, ncols + 1), dtype=np.float32)
                terms[..., 0] = acc
                terms[..., 1:] = _tree(prod)
                # add.accumulate is strictly sequential: acc + tree_0, then + tree_1, ...
                acc = np.add.accumulate(terms, axis=-1)[..., -1]
            nan = np.isnan(acc)
            if nan.any():
                acc = np.where(nan, _NAN, acc)
        else:
            self.slow_macs += 1
            b16 = self.gb[chs, gcols][:, None, :]
            acc = mac_columns(acc, a16.reshape(nch, nb, ncols, COL),
                              np.broadcast_to(b16, a16.shape).reshape(nch, nb, ncols, COL))
        self.acc[chs, banks, k] = acc.reshape(self.acc[chs, banks, k].shape)

    def _mac_abk(self, a, flags):
        chs, nch = self._channels(a["ch_mask"])
        self._mac(chs, nch, slice(None), a["row"], a["col"], a["ncols"], a["gb_col"], a["acc"])

    def _mac_sbk(self, a, flags):
        chs, nch = self._channels(a["ch_mask"])
        self._check_bank(a["bank"])
        self._mac(chs, nch, a["bank"], a["row"], a["col"], a["ncols"], a["gb_col"], a["acc"])

    def _rd_mac(self, a, flags):
        chs, nch = self._channels(a["ch_mask"])
        k, nk = a["acc"], a["nacc"]
        self._check_acc(k, nk)
        dst = self._sp_range(a["dst"], nk * nch * self.B)
        # Word dst + j*S + slot: accumulator acc + j of the slot-th selected bank.
        self.sp[dst] = np.moveaxis(self.acc[chs, :, k:k + nk], -1, 0).reshape(-1)
        self.acc[chs, :, k:k + nk] = 0.0

    def _wr_bias(self, a, flags):
        chs, nch = self._channels(a["ch_mask"])
        k, nk = a["acc"], a["nacc"]
        self._check_acc(k, nk)
        src = self._sp_range(a["src"], nk * nch * self.B)
        self.acc[chs, :, k:k + nk] = np.moveaxis(self.sp[src].reshape(nk, nch, self.B), 0, -1)

    def _elems(self, elem: int, n: int) -> slice:
        if elem + n > self.re:
            self._fail(f"elements [{elem}, {elem + n}) exceed a row of {self.re}")
        return slice(elem, elem + n)

    def _wr_sbk(self, a, flags):
        self._check_ch(a["ch"])
        self._check_bank(a["bank"])
        self._ensure_rows(a["row"] + 1)
        els = self._elems(a["elem"], a["n"])
        src = self._sp_range(a["src"], a["n"])
        self.dram[a["ch"], a["bank"], a["row"], els] = f32_to_bf16(self.sp[src])
        self.row_emin[a["ch"], a["bank"], a["row"]] = _UNKNOWN

    def _wr_abk(self, a, flags):
        chs, _ = self._channels(a["ch_mask"])
        self._ensure_rows(a["row"] + 1)
        els = self._elems(a["elem"], a["n"])
        src = self._sp_range(a["src"], a["n"])
        self.dram[chs, :, a["row"], els] = f32_to_bf16(self.sp[src])
        self.row_emin[chs, :, a["row"]] = _UNKNOWN

    def _rd_sbk(self, a, flags):
        self._check_ch(a["ch"])
        self._check_bank(a["bank"])
        self._ensure_rows(a["row"] + 1)
        els = self._elems(a["elem"], a["n"])
        dst = self._sp_range(a["dst"], a["n"])
        self.sp[dst] = bf16_to_f32(self.dram[a["ch"], a["bank"], a["row"], els])

    def _copy_bkgb(self, a, flags):
        chs, _ = self._channels(a["ch_mask"])
        self._check_bank(a["bank"])
        self._ensure_rows(a["row"] + 1)
        dcols = self._cols(a["col"], a["ncols"])
        gcols = self._cols(a["gb_col"], a["ncols"], "global buffer")
        self.gb[chs, gcols] = self.dram[chs, a["bank"], a["row"], dcols]
        self._gb_changed(chs)

    def _copy_gbbk(self, a, flags):
        chs, _ = self._channels(a["ch_mask"])
        self._check_bank(a["bank"])
        self._ensure_rows(a["row"] + 1)
        dcols = self._cols(a["col"], a["ncols"])
        gcols = self._cols(a["gb_col"], a["ncols"], "global buffer")
        self.dram[chs, a["bank"], a["row"], dcols] = self.gb[chs, gcols]
        self.row_emin[chs, a["bank"], a["row"]] = _UNKNOWN

    def _region_addr(self, a, vec, elem):
        """Validated DRAM addresses of (vector, element) pairs of the instruction's region."""
        vec_len, n_local = a["vec_len"], a["n_local"]
        if vec_len == 0 or vec_len % COL or n_local == 0:
            self._fail(f"bad region: vec_len {vec_len} (a positive multiple of 16), "
                       f"n_local {n_local} (positive)")
        vec = np.asarray(vec, dtype=np.int64)
        elem = np.asarray(elem, dtype=np.int64)
        if vec.size and vec.max() >= n_local * self.C * self.B:
            self._fail(f"vector {int(vec.max())} is beyond the region's "
                       f"{n_local * self.C * self.B} vectors")
        if elem.size and elem.max() >= vec_len:
            self._fail(f"element {int(elem.max())} is beyond the vector length {vec_len}")
        end = a["region_row"] + -(-(n_local * vec_len) // self.re)
        self._ensure_rows(end)
        return element_address(a["region_row"], n_local, vec_len, vec, elem, channels=self.C,
                               banks=self.B, row_elems=self.re, gb_elems=self.G)

    def _rd_vec(self, a, flags):
        vec = a["vec"]
        if flags & FLAG_VEC_FROM_REG:
            if vec >= N_REGS:
                self._fail(f"register R{vec} does not exist (R0..R{N_REGS - 1})")
            vec = self.regs[vec]
        dst = self._sp_range(a["dst"], a["n"])
        ch, bank, row, el = self._region_addr(a, vec, np.arange(a["n"]))
        self.sp[dst] = bf16_to_f32(self.dram[ch, bank, row, el])

    def _wr_vec(self, a, flags):
        src = self._sp_range(a["src"], a["n"])
        ch, bank, row, el = self._region_addr(a, a["vec"], np.arange(a["n"]))
        self.dram[ch, bank, row, el] = f32_to_bf16(self.sp[src])
        self.row_emin[ch, bank, row] = _UNKNOWN

    def _wr_elem(self, a, flags):
        src = self._sp_range(a["src"], a["n"])
        vecs = a["vec"] + np.arange(a["n"])
        ch, bank, row, el = self._region_addr(a, vecs, a["elem"])
        self.dram[ch, bank, row, el] = f32_to_bf16(self.sp[src])
        self.row_emin[ch, bank, row] = _UNKNOWN

    def _sync(self, a, flags):  # EOC is handled by run()
        pass

    _eoc = _sync

    # ---- ASIC side --------------------------------------------------------------------------
    def _reg(self, r: int) -> int:
        if r >= N_REGS:
            self._fail(f"register R{r} does not exist (R0..R{N_REGS - 1})")
        return r

    def _argmax(self, a, flags):
        self._need_n(a["n"])
        values = self._vec(a["src"], a["n"])
        self.logits.append(values.copy())
        self.regs[self._reg(a["reg"])] = int(f32_argmax(values))

    def _argmaxc(self, a, flags):
        reg, lo, n = self._reg(a["reg"]), a["lo"], a["n"]
        self._need_n(n)
        if not self.regs[reg] < lo:
            self._fail(f"R{reg} = {self.regs[reg]} is not below lo = {lo}: ARGMAXC continues "
                       "an ARGMAX of src[0 .. lo)")
        values = self._vec(a["src"], lo + n)
        chain = self.logits and len(self.logits[-1]) == lo  # a chain's logits are one vector
        self.logits[-1 if chain else len(self.logits):] = [values.copy()]
        self.regs[reg] = f32_argmax_continue(values, self.regs[reg], lo)

    def _setr(self, a, flags):
        self.regs[self._reg(a["reg"])] = a["imm"]

    def _out(self, a, flags):
        self.out.append(self.regs[self._reg(a["reg"])])


def run_program(hw: HwConfig, program, dram_image: np.ndarray | None = None,
                source: str = "program") -> tuple[GoldenMachine, dict]:
    """Run a program (list of Instr or binary) on a fresh machine; return it and its stats."""
    machine = GoldenMachine(hw, dram_image)
    stats = machine.run(program, source=source)
    return machine, stats


def run_golden(cfg, hw: HwConfig, weights: dict, prompt, new_tokens: int, progress: bool = False,
               compiled=None):
    """Compile a generation, load the weights into DRAM and run it on the golden machine.

    Parameters
    ----------
    cfg : ModelConfig
    hw : HwConfig
    weights : dict of str to numpy.ndarray
        float32 weights in pimgpt names (stored as bf16).
    prompt : sequence of int
    new_tokens : int
    progress : bool
        Show a progress bar over model steps on stderr.
    compiled : CompiledProgram, optional
        A program already compiled for this generation (or any program for ``cfg`` on ``hw``
        with the default memory map).

    Returns
    -------
    (list of int, list of numpy.ndarray, dict)
        Generated tokens, the logits of each generated token (float32 ``[vocab]``), statistics.
    """
    from pimgpt.sw.compiler import compile_generation
    from pimgpt.sw.image import build_dram_image

    t0 = time.perf_counter()
    if compiled is None:
        compiled = compile_generation(cfg, hw, prompt, new_tokens)
    t1 = time.perf_counter()
    image = build_dram_image(compiled.memmap, weights)
    t2 = time.perf_counter()
    machine = GoldenMachine(hw, image)
    from pimgpt.core.progress import progress as progress_bar

    with progress_bar(len(compiled.steps), f"golden {cfg.name}", enabled=progress) as bar:
        def on_step(k):
            if k:
                bar.update(1)

        stats = machine.run(compiled.program, [s.start for s in compiled.steps], on_step)
        bar.update(bar.total - bar.n)
    stats.update(compile_seconds=t1 - t0, load_seconds=t2 - t1, steps=len(compiled.steps),
                 scratchpad_words_used=compiled.scratchpad_words_used)
    return list(machine.out), list(machine.logits), stats
