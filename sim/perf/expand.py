"""Command expansion: each PIM instruction becomes DRAM commands on its channels.

Every handler takes ``(instruction, dispatch cycle, channel mask, look-ahead)`` and returns
``(first command cycle, completion cycle)``; it issues its commands through the :class:`Device`
(which applies the row, mode and refresh policy and the timing table) and counts the bytes that
cross the data pins:

* ``WR_GB``: ``ncols`` ``WRGB`` bursts per channel;
* ``MAC_ABK``: the row opened in every bank, then ``ncols`` ``MAC16``; with ``dram.act_overlap``
  the row of the next ``MAC_ABK`` before the next ``SYNC`` is opened in the other row buffer
  between the MAC commands;
* ``MAC_SBK``/``COPY_BKGB``/``COPY_GBBK``/``WR_SBK``/``RD_SBK``: one bank's row, then a train of
  ``MAC``/``RDCP``/``WRCP``/``WR``/``RD``;
* ``RD_MAC``/``WR_BIAS``: ``nacc`` accumulators of every bank of each selected channel, in
  ``RDMAC16``/``WRMAC16`` bursts (:func:`pimgpt.core.dram.acc_bursts`): one register-mode visit;
* ``WR_ABK``: the row opened in every bank, then ``WR16``;
* ``RD_VEC``/``WR_VEC``/``WR_ELEM``: the region layout of ``docs/isa.md`` resolved to single-bank
  column runs (``WR_ELEM`` writes one column per element, in waves of distinct banks).
"""

from __future__ import annotations

import numpy as np

from pimgpt.core import dram as S
from pimgpt.core.config import ConfigError, HwConfig
from pimgpt.core.isa import FLAG_VEC_FROM_REG, N_REGS, Op
from pimgpt.sim.perf.device import Device

C_RD, C_WR, C_MAC, C_MAC16, C_WR16 = (S.CMD[c] for c in ("RD", "WR", "MAC", "MAC16", "WR16"))
C_RDCP, C_WRCP, C_WRGB = S.CMD["RDCP"], S.CMD["WRCP"], S.CMD["WRGB"]
C_RDMAC16, C_WRMAC16 = S.CMD["RDMAC16"], S.CMD["WRMAC16"]


class Expander:
    """The PIM instruction handlers of one device.

    Parameters
    ----------
    dev : Device
        The channels the commands go to.
    hw : HwConfig
        Hardware configuration (geometry of regions and bursts).
    regs : list of int
        The scalar registers (``RD_VEC`` with ``FLAG_VEC_FROM_REG`` reads its vector index there).
    """

    def __init__(self, dev: Device, hw: HwConfig, regs: list):
        self.dev = dev
        self.hw = hw
        self.regs = regs
        d = hw.dram
        self.NB, self.NS, self.slots = d.banks, dev.NS, d.slots
        self.G, self.RE, self.CE = d.gb_elems, d.row_elems, d.col_elems
        self.burst_bytes = d.column_bytes
        self.done = dev.done
        self.io_in = self.io_out = 0
        self._bursts: dict = {}  # nacc -> bursts per channel (RD_MAC, WR_BIAS)
        self._elem_plans: dict = {}  # WR_ELEM operands but region_row -> its accesses
        self.handlers = {
            Op.WR_GB: self._wr_gb, Op.MAC_ABK: self._mac_abk, Op.MAC_SBK: self._mac_sbk,
            Op.RD_MAC: self._rd_mac, Op.WR_BIAS: self._wr_bias, Op.WR_SBK: self._wr_sbk,
            Op.WR_ABK: self._wr_abk, Op.RD_SBK: self._rd_sbk, Op.COPY_BKGB: self._copy,
            Op.COPY_GBBK: self._copy, Op.RD_VEC: self._vec, Op.WR_VEC: self._vec,
            Op.WR_ELEM: self._wr_elem,
        }

    # ---- helpers ----------------------------------------------------------------------------
    def _cols(self, elem: int, n: int) -> tuple:
        if n <= 0:
            return 0, 0
        c0 = elem // self.CE
        return c0, (elem + n - 1) // self.CE - c0 + 1

    def _check_bank(self, bank: int) -> None:
        if bank >= self.NB:
            raise ConfigError(
                f"bank {bank} does not exist on {self.hw.name} ({self.NB} banks per channel); "
                "compile the program for this hardware"
            )

    def _runs(self, mask, t_min, runs, c, la=None):
        """Issue single-bank runs ``(bank, row, col, ncols)`` of command ``c`` (at least one).

        ``la``: the ``(row, ch_mask)`` of the next ``MAC_ABK`` (``dram.early_activate``); when
        every run is in that row and the mask covers the channels, the row is first opened in
        every bank (one all-bank activation), ready for that ``MAC_ABK``."""
        dev = self.dev
        rows = tuple([r[1] for r in runs])

        def body(st, t, g):
            if la is not None and (la[1] & g.mask) == g.mask and rows.count(la[0]) == len(rows):
                dev.open(st, range(self.NB), la[0], t, g)
            last = t
            for bank, row, _col, ncols in runs:
                dev.open(st, (bank,), row, t, g)
                last = dev.train(st, c, bank, row % self.NS, ncols, t, g, (), row)
            return last + self.done[c]
        sig = ("runs", c, tuple([(r[0], r[3]) for r in runs]))
        if la is None:
            return dev.uniform(mask, t_min, body, sig, rows)
        return dev.uniform(mask, t_min, body, sig + ("ahead",), rows + (la[0],), la[1])

    # ---- handlers ---------------------------------------------------------------------------
    def _open_ahead(self, st, la, t, g) -> None:
        """Before a register-mode visit: open the row of the next ``MAC_ABK`` (``la``) on channels
        it selects, while the channel is still in array mode (``dram.early_activate``)."""
        if la is not None and st.mode != S.REGISTER_MODE and (la[1] & g.mask) == g.mask:
            self.dev.open(st, range(self.NB), la[0], t, g)

    def _wr_gb(self, ins, t_min, mask, la):
        n = ins.args["ncols"]
        self.io_in += n * self.burst_bytes * mask.bit_count()
        dev = self.dev

        def body(st, t, g):
            if not n:
                return t
            self._open_ahead(st, la, t, g)
            return dev.train(st, C_WRGB, 0, 0, n, t, g) + self.done[C_WRGB]
        if not n:
            return dev.uniform(mask, t_min, body)
        if la is None:
            return dev.uniform(mask, t_min, body, ("wr_gb", n))
        return dev.uniform(mask, t_min, body, ("wr_gb", n), (la[0],), la[1])

    def _mac_abk(self, ins, t_min, mask, la):
        a = ins.args
        row, n = a["row"], a["ncols"]
        NB, dev = self.NB, self.dev

        def body(st, t, g):
            sub = row % self.NS
            dev.open(st, range(NB), row, t, g)
            if not n:
                return t
            inject = ()
            if la is not None and la[0] % self.NS != sub and (la[1] & g.mask) == g.mask:
                inject = dev.plan_open(st, range(NB), la[0])
            return dev.train(st, C_MAC16, 0, sub, n, t, g, inject, row) + self.done[C_MAC16]
        if not n:
            return dev.uniform(mask, t_min, body)
        if la is None:
            return dev.uniform(mask, t_min, body, ("mac_abk", n), (row,))
        return dev.uniform(mask, t_min, body, ("mac_abk", n), (row, la[0]), la[1])

    def _mac_sbk(self, ins, t_min, mask, _la):
        a = ins.args
        bank, row, n = a["bank"], a["row"], a["ncols"]
        self._check_bank(bank)
        dev = self.dev

        def body(st, t, g):
            if not n:
                return t
            dev.open(st, (bank,), row, t, g)
            return (dev.train(st, C_MAC, bank, row % self.NS, n, t, g, (), row)
                    + self.done[C_MAC])
        if not n:
            return dev.uniform(mask, t_min, body)
        return dev.uniform(mask, t_min, body, ("mac_sbk", bank, n), (row,))

    def _acc_transfer(self, ins, t_min, mask, c, la):
        """``RD_MAC``/``WR_BIAS``: ``nacc`` accumulators of every bank, one train per channel."""
        nacc = ins.args["nacc"]
        k = self._bursts.get(nacc)
        if k is None:
            k = self._bursts[nacc] = S.acc_bursts(self.hw, nacc)
        nbytes = nacc * self.NB * S.ACC_BYTES * mask.bit_count()
        if c == C_RDMAC16:
            self.io_out += nbytes
        else:
            self.io_in += nbytes
        dev = self.dev

        def body(st, t, g):
            if not k:
                return t
            self._open_ahead(st, la, t, g)
            return dev.train(st, c, 0, 0, k, t, g) + self.done[c]
        if not k:
            return dev.uniform(mask, t_min, body)
        if la is None:
            return dev.uniform(mask, t_min, body, ("acc", c, k))
        return dev.uniform(mask, t_min, body, ("acc", c, k), (la[0],), la[1])

    def _rd_mac(self, ins, t_min, mask, la):
        return self._acc_transfer(ins, t_min, mask, C_RDMAC16, la)

    def _wr_bias(self, ins, t_min, mask, la):
        return self._acc_transfer(ins, t_min, mask, C_WRMAC16, la)

    def _wr_sbk(self, ins, t_min, mask, _la):
        a = ins.args
        c0, nc = self._cols(a["elem"], a["n"])
        self._check_bank(a["bank"])
        self.io_in += nc * self.burst_bytes
        if not nc:
            return t_min, t_min
        return self._runs(mask, t_min, [(a["bank"], a["row"], c0, nc)], C_WR)

    def _rd_sbk(self, ins, t_min, mask, _la):
        a = ins.args
        c0, nc = self._cols(a["elem"], a["n"])
        self._check_bank(a["bank"])
        self.io_out += nc * self.burst_bytes
        if not nc:
            return t_min, t_min
        return self._runs(mask, t_min, [(a["bank"], a["row"], c0, nc)], C_RD)

    def _wr_abk(self, ins, t_min, mask, _la):
        a = ins.args
        row = a["row"]
        c0, nc = self._cols(a["elem"], a["n"])
        self.io_in += nc * self.burst_bytes * mask.bit_count()
        if not nc:
            return t_min, t_min
        dev = self.dev

        def body(st, t, g):
            dev.open(st, range(self.NB), row, t, g)
            return (dev.train(st, C_WR16, 0, row % self.NS, nc, t, g, (), row)
                    + self.done[C_WR16])
        return dev.uniform(mask, t_min, body, ("wr_abk", nc), (row,))

    def _copy(self, ins, t_min, mask, _la):
        a = ins.args
        c = C_RDCP if ins.op == Op.COPY_BKGB else C_WRCP
        self._check_bank(a["bank"])
        if not a["ncols"]:
            return t_min, t_min
        return self._runs(mask, t_min, [(a["bank"], a["row"], a["col"], a["ncols"])], c)

    def _vec_runs(self, vec, n, region_row, n_local, vec_len):
        """Per-channel runs ``(bank, row, col, ncols)`` covering elements ``[0, n)`` of ``vec``."""
        slot = vec % self.slots
        i = vec // self.slots
        ch, bank = divmod(slot, self.NB)
        G, RE = self.G, self.RE
        runs = []
        e = 0
        while e < n:
            tk = e // G
            lt = min(G, vec_len - tk * G)
            stop = min(n, tk * G + lt)
            flat = region_row * RE + tk * n_local * G + i * lt + (e - tk * G)
            flat_end = flat + (stop - e)
            while flat < flat_end:
                row, el = divmod(flat, RE)
                chunk = min(flat_end - flat, RE - el)
                c0, nc = self._cols(el, chunk)
                runs.append((bank, row, c0, nc))
                flat += chunk
            e = stop
        return ch, runs

    def vec_rows(self, ins):
        """``(channel, set of rows)`` that a ``RD_VEC``/``WR_VEC`` accesses; ``None`` when its
        vector comes from a register (known only when it runs) or it accesses nothing."""
        a = ins.args
        if (ins.op == Op.RD_VEC and ins.flags & FLAG_VEC_FROM_REG) or a["n"] == 0:
            return None
        ch, runs = self._vec_runs(a["vec"], a["n"], a["region_row"], a["n_local"], a["vec_len"])
        return ch, {r[1] for r in runs}

    def _vec(self, ins, t_min, mask, la):
        a = ins.args
        vec = a["vec"]
        if ins.op == Op.RD_VEC and ins.flags & FLAG_VEC_FROM_REG:
            vec = self.regs[vec % N_REGS]
        if a["n"] == 0:
            return t_min, t_min
        ch, runs = self._vec_runs(vec, a["n"], a["region_row"], a["n_local"], a["vec_len"])
        c = C_RD if ins.op == Op.RD_VEC else C_WR
        nbytes = sum(r[3] for r in runs) * self.burst_bytes
        if c == C_RD:
            self.io_out += nbytes
        else:
            self.io_in += nbytes
        return self._runs(1 << ch, t_min, runs, c, la)

    def _wr_elem(self, ins, t_min, mask, _la):
        """``WR_ELEM``: one column write per vector, in waves of distinct banks."""
        a = ins.args
        n = a["n"]
        if n == 0:
            return t_min, t_min
        self.io_in += n * self.burst_bytes
        key = (n, a["vec"], a["elem"], a["n_local"], a["vec_len"])
        plan = self._elem_plans.get(key)
        if plan is None:
            if len(self._elem_plans) >= 64:
                self._elem_plans.clear()
            plan = self._elem_plans[key] = self._elem_plan(*key)
        shift = a["region_row"]  # every row of the region is the plan's plus region_row
        dev = self.dev
        dev.first = None
        e0 = t_min
        for chans, sig, rel_rows, rel_waves, paced in plan:
            rows = tuple([r + shift for r in rel_rows])

            def body(st, t, g, rel_waves=rel_waves):
                waves = [([(bank, row + shift, col) for bank, row, col in w], t0)
                         for w, t0 in rel_waves]
                return self._wr_waves(st, waves, t, g)
            for g in dev.groups(chans):
                e0 = dev.run_group(g, t_min, body, e0, sig, rows, paced=paced)
        return (t_min if dev.first is None else dev.first), e0

    def _elem_plan(self, n, vec0, elem, n_local, vec_len) -> list:
        """The accesses of a ``WR_ELEM`` at region row 0: per group of channels with the same
        accesses and op times ``(channels, sig, rows, waves, paced)``, in channel order of first
        access; a wave is ``(accesses (bank, row, col), cycle of its first op after dispatch)``;
        ``paced`` is the last cycle after dispatch at which the waves ask for a command."""
        G, RE, CE = self.G, self.RE, self.CE
        tk = elem // G
        lt = min(G, vec_len - tk * G)
        v = vec0 + np.arange(n, dtype=np.int64)
        ch, bank = np.divmod(v % self.slots, self.NB)
        row, el = np.divmod(tk * n_local * G + (v // self.slots) * lt + (elem - tk * G), RE)
        col = el // CE
        waves = self._elem_schedule(ch.tolist(), zip(bank.tolist(), row.tolist(), col.tolist(),
                                                     strict=True))
        by_key: dict = {}
        for c, ws in waves.items():
            by_key.setdefault(tuple(ws), []).append(c)
        plan = []
        for ws, chans in by_key.items():
            sig = ("wr_elem", tuple((tuple(x[0] for x in w), t) for w, t in ws))
            plan.append((chans, sig, tuple(x[1] for w, _ in ws for x in w), ws,
                         _last_request(ws)))
        return plan

    def _elem_schedule(self, chans: list, accesses) -> dict:
        """Per channel (in order of first access) its waves ``(accesses, first op cycle)``.

        The RTL's wave generator (``hdl/pim_wave.py``) examines the elements in order, one per
        ``asic.elem_scan_cycles``; an element whose bank already has one in its channel's wave
        closes that wave first: the wave's ops (one ``OPEN`` per row but the last, then one
        ``WR`` per element) leave one per tCK, ``elem_wave_cycles`` besides them, one of which
        after the last. At the end the partial waves leave in channel order (a channel with none
        left costs the generator one tCK more, which this leaves out). The generator takes the
        instruction in its first tCK. With ``asic.elem_per_channel`` each channel has its own
        generator that sees only its channel's elements, in the same order.
        """
        a = self.hw.asic
        scan, extra = a.elem_scan_cycles, a.elem_wave_cycles
        out: dict = {}
        cur: dict = {}
        # Generator cycle after dispatch, by generator: one for all channels (the RTL's, key 0),
        # or one per channel (``asic.elem_per_channel``), each on its own channel's command bus.
        per_channel = a.elem_per_channel
        gen: dict = {}

        def close(c, k):
            w = cur.pop(c)
            opens = len({x[1] for x in w}) - 1
            out[c].append((tuple(w), gen[k] + extra - 1))
            gen[k] += extra + opens + len(w)
        for c, x in zip(chans, accesses, strict=True):
            out.setdefault(c, [])
            k = c if per_channel else 0
            gen.setdefault(k, 1)
            w = cur.setdefault(c, [])
            if any(y[0] == x[0] for y in w):
                gen[k] += scan
                close(c, k)
                cur[c] = w = []
            gen[k] += scan
            w.append(x)
        for c in sorted(cur):
            k = c if per_channel else 0
            gen[k] += scan
            close(c, k)
        return out

    def _wr_waves(self, st, waves, t, g):
        """The waves ``(accesses, first op cycle after t)`` of one channel: each wave's rows are
        opened as its ops arrive, then its writes one per op cycle."""
        dev = self.dev
        last = t
        for wave, t0 in waves:
            rows: list = []
            by_row: dict = {}
            for bank, row, _ in wave:
                if row not in by_row:
                    rows.append(row)
                by_row.setdefault(row, []).append(bank)
            for j, row in enumerate(rows):
                dev.open(st, by_row[row], row, t + t0 + j, g)
            tw = t + t0 + len(rows) - 1
            for k, (bank, row, _) in enumerate(wave):
                last = dev.train(st, C_WR, bank, row % self.NS, 1, tw + k, g, (), row)
        return last + self.done[C_WR]


def _last_request(waves) -> int:
    """The latest cycle after dispatch at which :meth:`Expander._wr_waves` asks for a command of
    ``waves`` (each wave's rows opened one per cycle from its first op cycle, then its writes one
    per cycle)."""
    return max(t0 + len({row for _b, row, _c in w}) + len(w) - 2 for w, t0 in waves)
