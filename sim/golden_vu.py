"""The golden model's vector-unit instructions (``VADD`` ... ``SOFTMAXU``, not ``ARGMAX``): a mixin
of :class:`~pimgpt.sim.golden.GoldenMachine`, one method per opcode, each the function of
``pimgpt/core/nonlinear.py`` / ``nonlinear_llama.py`` / ``numerics.py`` that ``docs/isa.md`` names,
on the machine's fp32 scratchpad ``sp`` (``_sp_range`` and ``_fail`` come from the machine)."""

from __future__ import annotations

import numpy as np

from pimgpt.core import nonlinear, nonlinear_llama
from pimgpt.core.numerics import f32_add, f32_from_bits, f32_mul, flush_f32


class VectorOps:
    """Executors of the vector-unit opcodes (``_<opcode>(args, flags)``)."""

    def _vec(self, addr: int, n: int) -> np.ndarray:
        return self.sp[self._sp_range(addr, n)]

    def _store(self, dst: int, values: np.ndarray) -> None:
        self.sp[self._sp_range(dst, values.size)] = values

    def _need_n(self, n: int) -> None:
        if n == 0:
            self._fail("n must be at least 1")

    def _vadd(self, a, flags):
        n = a["n"]
        self._store(a["dst"], f32_add(self._vec(a["a"], n), self._vec(a["b"], n)))

    def _vadd3(self, a, flags):
        n = a["n"]
        bc = f32_add(self._vec(a["b"], n), self._vec(a["c"], n))
        self._store(a["dst"], f32_add(self._vec(a["a"], n), bc))

    def _vmul(self, a, flags):
        n = a["n"]
        self._store(a["dst"], f32_mul(self._vec(a["a"], n), self._vec(a["b"], n)))

    def _vscale(self, a, flags):
        scale = f32_from_bits(np.uint32(a["scale_f32"]))
        self._store(a["dst"], f32_mul(self._vec(a["a"], a["n"]), scale))

    def _vmov(self, a, flags):
        self._store(a["dst"], self._vec(a["src"], a["n"]).copy())

    def _vfill(self, a, flags):
        value = f32_from_bits(np.uint32(a["value_f32"]))
        self._store(a["dst"], np.full(a["n"], value, dtype=np.float32))

    def _vreduce(self, a, flags):
        n, k = a["n"], a["k"]
        if k == 0:
            self._fail("k must be at least 1")
        src = self._vec(a["src"], n * k)
        acc = flush_f32(src[:n])
        for j in range(1, k):
            acc = f32_add(acc, src[j * n:(j + 1) * n])
        self._store(a["dst"], acc)

    def _vmax(self, a, flags):
        self._need_n(a["n"])
        self._store(a["dst"], np.atleast_1d(nonlinear.vmax(self._vec(a["src"], a["n"]))))

    def _unary(self, fn, a):
        if a["n"]:
            self._store(a["dst"], fn(self._vec(a["src"], a["n"])))

    def _vexp(self, a, flags):
        self._unary(nonlinear.exp, a)

    def _vrecip(self, a, flags):
        self._unary(nonlinear.reciprocal, a)

    def _vrsqrt(self, a, flags):
        self._unary(nonlinear.rsqrt, a)

    def _vgelu(self, a, flags):
        self._unary(nonlinear.gelu, a)

    def _softmax(self, a, flags):
        n, rows = a["n"], a["rows"]
        self._need_n(n)
        if rows == 0:
            self._fail("rows must be at least 1")
        x = self._vec(a["src"], n * rows).reshape(rows, n)
        self._store(a["dst"], nonlinear.softmax(x).reshape(-1))

    def _softmaxu(self, a, flags):
        n, rows = a["n"], a["rows"]
        self._need_n(n)
        if rows == 0:
            self._fail("rows must be at least 1")
        e, r = nonlinear.softmax_parts(self._vec(a["src"], n * rows).reshape(rows, n))
        self._store(a["dst"], e.reshape(-1))
        self._store(a["rcp"], np.repeat(r, a["rseg"]))

    def _layernorm(self, a, flags):
        n = a["n"]
        self._need_n(n)
        eps = f32_from_bits(np.uint32(a["eps_f32"]))
        y = nonlinear.layernorm(self._vec(a["src"], n), self._vec(a["gamma"], n),
                                self._vec(a["beta"], n), eps)
        self._store(a["dst"], y)

    def _lncentre(self, a, flags):
        n = a["n"]
        self._store(a["dst"], nonlinear.layernorm_centre(self._vec(a["src"], n),
                                                         self._vec(a["gamma"], n)))

    def _lnrstd(self, a, flags):
        n = a["n"]
        eps = f32_from_bits(np.uint32(a["eps_f32"]))
        d, rstd = nonlinear.layernorm_stats(self._vec(a["src"], n), eps)
        self._store(a["tmp"], d)
        self._store(a["dst"], np.atleast_1d(rstd))

    def _vmads(self, a, flags):
        n = a["n"]
        if n:
            s = self._vec(a["s"], 1)[0]
            self._store(a["dst"], f32_add(f32_mul(self._vec(a["a"], n), s),
                                          self._vec(a["b"], n)))

    def _rmsrstd(self, a, flags):
        eps = f32_from_bits(np.uint32(a["eps_f32"]))
        rstd = nonlinear_llama.rmsnorm_rstd(self._vec(a["src"], a["n"]), eps)
        self._store(a["dst"], np.atleast_1d(rstd))

    def _vmuls(self, a, flags):
        if a["n"]:
            s = self._vec(a["s"], 1)[0]
            self._store(a["dst"], f32_mul(self._vec(a["a"], a["n"]), s))

    # Llama functions; zero counts are refused up front (check_program: SPEC's nonzero fields).
    def _rmsnorm(self, a, flags):
        n, eps = a["n"], f32_from_bits(np.uint32(a["eps_f32"]))
        y = nonlinear_llama.rmsnorm(self._vec(a["src"], n), self._vec(a["gamma"], n), eps)
        self._store(a["dst"], y)

    def _rope(self, a, flags):
        half, nhead = a["half"], a["nhead"]
        x = self._vec(a["src"], 2 * half * nhead).reshape(nhead, 2 * half)
        tab = self._vec(a["tab"], 2 * half)
        self._store(a["dst"], nonlinear_llama.rope(x, tab[:half], tab[half:]).reshape(-1))

    def _swiglu(self, a, flags):
        if a["n"]:
            gate, up = self._vec(a["gate"], a["n"]), self._vec(a["up"], a["n"])
            self._store(a["dst"], nonlinear_llama.swiglu(gate, up))

    def _vmacs(self, a, flags):
        seg, nseg = a["seg"], a["nseg"]
        n = seg * nseg
        scale = np.repeat(self._vec(a["s"], nseg), seg)
        self._store(a["dst"], f32_add(self._vec(a["dst"], n), f32_mul(self._vec(a["a"], n), scale)))


__all__ = ["VectorOps"]
