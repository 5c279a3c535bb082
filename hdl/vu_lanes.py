"""The vector unit's ``W`` lanes: per lane a multiply-add pipeline and an integer/compare/select
unit, and the lane network (``pimgpt/core/vu/uisa.py`` gives the semantics).

Timing (an operation issued in cycle ``t`` has its result in the register file at ``t + L``, the
write happening in cycle ``t + L - 1``):

* ``VFMUL``: the multiplier (``asic.fp_mul_latency - 1`` registers) writes through port F;
* ``VFADD``: the adder (``asic.fp_add_latency - 1`` registers) writes through port F;
* ``VMAD``: the product is registered once more and enters the adder ``Lm`` cycles after issue
  together with ``C`` (delayed as long), so the sum is written at ``t + Lm + La - 1``; the
  sequencer's port-F reservation guarantees that a ``VFADD`` never meets a ``VMAD`` product at
  the adder (both would write port F in the same cycle);
* ``VFGT``/``VFEQ`` (FP class) and every INT-class operation: one cycle, written at once.

Results leave on two write ports: ``wf`` (the FP class) and ``wi`` (the INT class); the vector
unit adds the loads to port I.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from pimgpt.core.vu import uisa
from pimgpt.core.vu.uisa import MODE_SIGN, MODE_UPPER, Pipeline, UOp

from .fp import FP32_CANONICAL_NAN, check_int
from .fp32add import FP32Add
from .fp32mul import FP32Mul
from .vu_decode import UWORD, uop

__all__ = ["VectorLanes", "FpLane", "IntLane", "LANE_OP", "write_port_layout", "delay"]

_OP = UWORD["op"].shape
#: An operation entering the lanes: valid, opcode, destination register, mode.
LANE_OP = data.StructLayout({"valid": 1, "op": _OP, "rd": 5, "mode": 4})
NEG_ZERO = 0x80000000


def write_port_layout(lanes: int) -> data.StructLayout:
    """A register-file write: enable, register, ``lanes`` words."""
    return data.StructLayout({"en": 1, "rd": 5, "data": data.ArrayLayout(32, lanes)})


def delay(m: Module, value, n: int, name: str):
    """``value`` delayed by ``n`` sync registers (``n = 0``: itself)."""
    for k in range(n):
        reg = Signal.like(value, name=f"{name}_d{k}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


class FpLane(wiring.Component):
    """One lane's multiply-add pipeline and float compare.

    Parameters
    ----------
    lat : Pipeline
        ``mul`` and ``add`` latencies (1..8 each).

    Attributes
    ----------
    mul_go, add_go, add_mad, mad_cap : In(1)
        Start a multiply of ``a*b``; start an add (of ``a+b``, or of the MAD register and ``C``
        when ``add_mad``); capture the multiplier's output into the MAD register.
    a, b, c : In(32)
    mul, add : Out(32)
        Multiplier and adder outputs (``lat.mul - 1`` / ``lat.add - 1`` cycles after start).
    gt, eq : Out(1)
        ``a > b`` and ``a == b`` in the float order of ``VFGT``/``VFEQ`` (combinational).
    """

    def __init__(self, lat: Pipeline):
        if not isinstance(lat, Pipeline):
            raise TypeError(f"lat must be a uisa.Pipeline, not {lat!r}")
        self._lat = lat
        super().__init__({"mul_go": In(1), "add_go": In(1), "add_mad": In(1), "mad_cap": In(1),
                          "a": In(32), "b": In(32), "c": In(32), "mul": Out(32), "add": Out(32),
                          "gt": Out(1), "eq": Out(1)})

    def elaborate(self, platform):
        m = Module()
        lm, la = self._lat.mul - 1, self._lat.add - 1
        m.submodules.mul = mul = FP32Mul(latency=min(lm, 2))
        m.submodules.add = add = FP32Add(latency=min(la, 3))
        m.d.comb += [mul.i.valid.eq(self.mul_go), mul.i.payload.a.eq(self.a),
                     mul.i.payload.b.eq(self.b)]
        product = delay(m, mul.o.payload.as_value(), max(lm - 2, 0), "mul_x")
        mad = Signal(32)
        with m.If(self.mad_cap):
            m.d.sync += mad.eq(product)
        c_late = delay(m, self.c, self._lat.mul, "c")
        m.d.comb += [add.i.valid.eq(self.add_go),
                     add.i.payload.a.eq(Mux(self.add_mad, mad, self.a)),
                     add.i.payload.b.eq(Mux(self.add_mad, c_late, self.b)),
                     self.mul.eq(product),
                     self.add.eq(delay(m, add.o.payload.as_value(), max(la - 3, 0), "add_x"))]
        ka, kb = _cmp_key(self.a), _cmp_key(self.b)
        m.d.comb += [self.gt.eq(ka > kb), self.eq.eq(ka == kb)]
        return m


def _flush(x):
    """DAZ and canonical NaN of an fp32 bit pattern (``numerics.flush_f32``)."""
    exp, mant = x[23:31], x[:23]
    return Mux(exp == 0, Cat(Const(0, 31), x[31]),
               Mux((exp == 0xFF) & (mant != 0), FP32_CANONICAL_NAN, x))


def _order_key(f):
    """``numerics.f32_order_key`` of a flushed pattern."""
    return Mux(f[31], ~f, f | NEG_ZERO)


def _cmp_key(x):
    """Key of ``VFGT``/``VFEQ``: the order key with ``-0`` equal to ``+0``."""
    k = _order_key(_flush(x))
    return Mux(k == 0x7FFFFFFF, NEG_ZERO, k)


def _is_nan(x):
    return (x[23:31] == 0xFF) & (x[:23] != 0)


class IntLane(wiring.Component):
    """One lane's INT-class operations that stay in the lane.

    ``VADD`` .. ``VSRA``, ``VFMAX``/``VFMIN`` (total order), ``VSLTU``, ``VCMOV``, ``VTBL``,
    ``VIOTA``, ``VBCAST``; the lane network (``VSHD``, ``VBCL``, ``VUZP``) is in
    :class:`VectorLanes`.

    Parameters
    ----------
    lane : int
        This lane's index (``VIOTA``).

    Attributes
    ----------
    op : In(op shape), mode : In(4)
    a, b, c : In(32)
        Operands (``c`` is ``v[rd]`` for ``VCMOV``).
    b0 : In(32)
        Lane 0 of operand ``B`` (``VIOTA``).
    y : Out(32)
    """

    def __init__(self, lane: int):
        self.lane = check_int("lane", lane, 0, 127)
        super().__init__({"op": In(_OP), "mode": In(4), "a": In(32), "b": In(32), "c": In(32),
                          "b0": In(32), "y": Out(32)})

    def elaborate(self, platform):
        m = Module()
        a, b, y = self.a, self.b, self.y
        sh = b[:5]
        fa, fb = _flush(a), _flush(b)
        ka, kb = _order_key(fa), _order_key(fb)
        nan = _is_nan(a) | _is_nan(b)
        cond = Mux((self.mode & MODE_SIGN) != 0, a[31], a != 0)
        cases = [
            (UOp.VADD, a + b), (UOp.VSUB, a - b), (UOp.VRSUB, b - a), (UOp.VAND, a & b),
            (UOp.VOR, a | b), (UOp.VXOR, a ^ b), (UOp.VSHL, a << sh), (UOp.VSHR, a >> sh),
            (UOp.VSRA, a.as_signed() >> sh),
            (UOp.VFMAX, Mux(nan, FP32_CANONICAL_NAN, Mux(kb > ka, fb, fa))),
            (UOp.VFMIN, Mux(nan, FP32_CANONICAL_NAN, Mux(kb < ka, fb, fa))),
            (UOp.VSLTU, a < b), (UOp.VCMOV, Mux(cond, b, self.c)),
            (UOp.VIOTA, self.b0 + self.lane), (UOp.VBCAST, b),
        ]
        with m.Switch(self.op):
            for op, value in cases:
                with m.Case(uop(op)):
                    m.d.comb += y.eq(value)
            with m.Case(uop(UOp.VTBL)):
                with m.Switch(self.mode):
                    for t, table in enumerate(uisa.TABLES):
                        with m.Case(t):
                            k = ceil_log2(len(table))
                            with m.Switch(a[:k]):
                                for i, value in enumerate(table):
                                    with m.Case(i):
                                        m.d.comb += y.eq(value)
        return m


class VectorLanes(wiring.Component):
    """``lanes`` lanes: the FP class (multiply-add pipelines, compares) and the INT class.

    Parameters
    ----------
    lanes : int
        One of ``uisa.LANE_CHOICES``.
    lat : Pipeline
        Latencies.

    Attributes
    ----------
    fp, vint : In(LANE_OP)
        The FP-class and INT-class operation issued this cycle.
    fa, fb, fc, ia, ib, ic : In(ArrayLayout(32, lanes))
        Their operands (``B`` and ``C`` resolved; ``ic`` is ``v[rc]`` for ``VUZP`` and ``v[rd]``
        for ``VCMOV``).
    wf, wi : Out(write_port_layout(lanes))
        Port F writes this cycle; the INT result of this cycle (port I).
    """

    #: The per-lane blocks (an area breakdown replaces them; see bench_rtl_system).
    FP_LANE = FpLane
    INT_LANE = IntLane

    def __init__(self, lanes: int, lat: Pipeline):
        self.lanes = uisa.check_lanes(lanes)
        if not isinstance(lat, Pipeline):
            raise TypeError(f"lat must be a uisa.Pipeline, not {lat!r}")
        self._lat = lat
        vec = data.ArrayLayout(32, lanes)
        super().__init__({"fp": In(LANE_OP), "vint": In(LANE_OP),
                          **{k: In(vec) for k in ("fa", "fb", "fc", "ia", "ib", "ic")},
                          "wf": Out(write_port_layout(lanes)), "wi": Out(write_port_layout(lanes))})

    def elaborate(self, platform):
        m = Module()
        self._fp_class(m)
        self._int_class(m)
        return m

    def _fp_class(self, m):
        W, lat, fp = self.lanes, self._lat, self.fp
        lanes = [self.FP_LANE(lat) for _ in range(W)]
        is_mul = fp.valid & ((fp.op == uop(UOp.VFMUL)) | (fp.op == uop(UOp.VMAD)))
        is_cmp = fp.valid & ((fp.op == uop(UOp.VFGT)) | (fp.op == uop(UOp.VFEQ)))
        ctl = data.StructLayout({"valid": 1, "rd": 5, "mad": 1})
        mul_in = Signal(ctl)
        m.d.comb += [mul_in.valid.eq(is_mul), mul_in.rd.eq(fp.rd),
                     mul_in.mad.eq(fp.op == uop(UOp.VMAD))]
        mul_out = ctl(delay(m, mul_in.as_value(), lat.mul - 1, "mulctl"))
        mad_stage = Signal(ctl)  # the product of a VMAD, entering the adder now
        m.d.sync += mad_stage.eq(Mux(mul_out.valid & mul_out.mad, mul_out.as_value(), 0))
        add_in = Signal(ctl)
        m.d.comb += [add_in.valid.eq(mad_stage.valid | (fp.valid & (fp.op == uop(UOp.VFADD)))),
                     add_in.rd.eq(Mux(mad_stage.valid, mad_stage.rd, fp.rd))]
        add_out = ctl(delay(m, add_in.as_value(), lat.add - 1, "addctl"))
        from_mul = mul_out.valid & ~mul_out.mad
        is_gt = fp.op == uop(UOp.VFGT)
        wf = self.wf
        m.d.comb += [wf.en.eq(add_out.valid | from_mul | is_cmp),
                     wf.rd.eq(Mux(add_out.valid, add_out.rd, Mux(from_mul, mul_out.rd, fp.rd)))]
        for k, ln in enumerate(lanes):
            m.submodules[f"fp{k}"] = ln
            m.d.comb += [ln.mul_go.eq(is_mul), ln.add_go.eq(add_in.valid),
                         ln.add_mad.eq(mad_stage.valid), ln.mad_cap.eq(mul_out.valid & mul_out.mad),
                         ln.a.eq(self.fa[k]), ln.b.eq(self.fb[k]), ln.c.eq(self.fc[k]),
                         wf.data[k].eq(Mux(add_out.valid, ln.add,
                                           Mux(from_mul, ln.mul, Mux(is_gt, ln.gt, ln.eq))))]

    def _int_class(self, m):
        W, vi = self.lanes, self.vint
        a, b, c = self.ia, self.ib, self.ic
        b0 = b[0]
        lb = ceil_log2(W)
        m.d.comb += [self.wi.en.eq(vi.valid), self.wi.rd.eq(vi.rd)]
        # Lane network: VSHD (log shifter, -0 shifted in), VBCL, VUZP (power-of-two segments).
        shd = [a[k] for k in range(W)]
        for bit in range(lb):
            step = 1 << bit
            shd = [Mux(b0[bit], shd[k + step] if k + step < W else NEG_ZERO, shd[k])
                   for k in range(W)]
        far = b0[lb:] != 0
        bcl = Signal(32)
        with m.Switch(b0[:lb]):
            for k in range(W):
                with m.Case(k):
                    m.d.comb += bcl.eq(a[k])
        upper = (vi.mode & MODE_UPPER) != 0
        half = W // 2
        uzp = [Signal(32, name=f"uzp{k}") for k in range(W)]
        with m.Switch(b0):
            for sb in range(lb):
                seg = 1 << sb
                with m.Case(seg):
                    for k in range(W):
                        j = k % half
                        src = (j // seg) * 2 * seg + j % seg
                        from_ = a if k < half else c
                        m.d.comb += uzp[k].eq(Mux(upper, from_[src + seg], from_[src]))
        for k in range(W):
            ln = self.INT_LANE(k)
            m.submodules[f"int{k}"] = ln
            m.d.comb += [ln.op.eq(vi.op), ln.mode.eq(vi.mode), ln.a.eq(a[k]), ln.b.eq(b[k]),
                         ln.c.eq(c[k]), ln.b0.eq(b0)]
            with m.Switch(vi.op):
                with m.Case(uop(UOp.VSHD)):
                    m.d.comb += self.wi.data[k].eq(Mux(far, NEG_ZERO, shd[k]))
                with m.Case(uop(UOp.VBCL)):
                    m.d.comb += self.wi.data[k].eq(bcl)
                with m.Case(uop(UOp.VUZP)):
                    m.d.comb += self.wi.data[k].eq(uzp[k])
                with m.Default():
                    m.d.comb += self.wi.data[k].eq(ln.y)
