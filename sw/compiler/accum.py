"""The MAC accumulators of the banks as a pool shared by the values being accumulated.

Every bank has ``dram.accumulators`` fp32 accumulators (ISA v2: ``MAC ... acc``). An *item* is one
value per bank slot of its channels, accumulated over one or more MAC trains and finally read into
the scratchpad at its destination (``RD_MAC``: accumulator ``acc + a`` of the ``j``-th selected
bank to word ``dst + a*S + j``). :class:`AccPool` assigns accumulators to items and emits the
reads:

* reads are lazy and batched: completed items stay in their accumulators until room is needed or
  the lowering flushes them, and items in consecutive accumulators whose destinations follow at
  the selected-bank stride are read by one ``RD_MAC`` with ``nacc > 1``; on GDDR6-AiM all reads and
  writes of accumulators between two MAC trains share one register-mode visit;
* when more items are in progress than there are accumulators, the least recently used ones are
  *spilled* (``RD_MAC`` into their own destination) and *restored* later (``WR_BIAS`` from it).
  Both move fp32 values exactly, so a spilled item accumulates exactly as if it had stayed: the
  arithmetic of ``docs/dataflow.md`` (one in-bank accumulation per dot product) holds for any
  number of accumulators.

Fresh items need an accumulator at +0: accumulators start at +0 and every read resets them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pimgpt.core.isa import Op

from .program import Recorder


@dataclass
class _Item:
    mask: int  # channels whose banks hold the item
    dst: int  # scratchpad word of its first value (also where it is spilled)
    acc: int = -1  # accumulator, -1 when not resident
    done: bool = False  # accumulation complete: read it, then forget it
    spilled: bool = False  # its partial value waits at dst
    used: int = 0  # last use (for least-recently-used spilling)
    #: the final read in parts ``((mask, dst), ...)``: channel subsets to their own destinations
    #: (grouped-query ``p . V``); empty: one read of ``mask`` to ``dst``
    parts: tuple = ()


def _popcount(x: int) -> int:
    return bin(x).count("1")


class AccPool:
    """Accumulator assignment for one program (see the module notes).

    Parameters
    ----------
    rec : Recorder
        Where the ``RD_MAC`` / ``WR_BIAS`` instructions go.
    n_acc : int
        Accumulators per bank (``hw.dram.accumulators``).
    banks : int
        Banks per channel.
    """

    def __init__(self, rec: Recorder, n_acc: int, banks: int):
        if n_acc < 1:
            raise ValueError(f"n_acc must be at least 1, got {n_acc}")
        self.rec, self.A, self.B = rec, n_acc, banks
        self.items: dict = {}
        self.slots: list = [None] * n_acc  # key of the item in each accumulator
        self.clock = 0

    def acc(self, key) -> int:
        """Accumulator of the resident item ``key`` (marks it used)."""
        item = self.items[key]
        self.clock += 1
        item.used = self.clock
        return item.acc

    def acquire(self, specs) -> None:
        """Make the items ``specs = [(key, mask, dst), ...]`` resident (at most ``A`` of them).

        New items start at +0, spilled ones are restored. Room is made first by reading the
        completed items, then by spilling the least recently used items not in ``specs``. A spec
        may carry a fourth element, ``parts = ((mask, dst), ...)``: the item's final read goes in
        those parts (each a subset of the item's channels to its own destination), while spills
        still use ``mask`` and ``dst``.
        """
        if len(specs) > self.A:
            raise ValueError(f"{len(specs)} items at once, but only {self.A} accumulators")
        items = self.items
        need = [s for s in specs if s[0] not in items or items[s[0]].acc < 0]
        if not need:  # all resident: only mark them used
            for spec in specs:
                self.clock += 1
                items[spec[0]].used = self.clock
            return
        keys = {spec[0] for spec in specs}
        free = [a for a, k in enumerate(self.slots) if k is None]
        if len(free) < len(need):
            self._read([k for k in self.slots if k is not None and self.items[k].done])
            free = [a for a, k in enumerate(self.slots) if k is None]
        if len(free) < len(need):
            victims = sorted((k for k in self.slots if k is not None and k not in keys),
                             key=lambda k: self.items[k].used)
            self._read(victims[:len(need) - len(free)], spill=True)
            free = [a for a, k in enumerate(self.slots) if k is None]
        restore = []
        for (key, mask, dst, *parts), a in zip(need, free, strict=False):
            item = self.items.get(key)
            if item is None:
                item = self.items[key] = _Item(mask, dst, parts=tuple(parts[0]) if parts else ())
            item.acc = a
            self.slots[a] = key
            if item.spilled:
                restore.append(key)
        self._transfer(Op.WR_BIAS, restore)
        for key in keys:
            self.clock += 1
            self.items[key].used = self.clock

    def done(self, keys) -> None:
        """The items ``keys`` are complete: read them at the next :meth:`flush` or when room is
        needed. A spilled item's value already waits at its destination; one to be read in parts
        is restored first (its parts go elsewhere)."""
        for key in keys:
            item = self.items[key]
            item.done = True
            if item.acc < 0 and item.spilled:
                if item.parts:
                    self.acquire([(key, item.mask, item.dst)])
                else:
                    del self.items[key]

    def flush(self, keys=None) -> None:
        """Read the completed items that are still held (only those among ``keys`` when given;
        items read earlier to make room are gone)."""
        if keys is None:
            keys = [k for k in self.slots if k is not None]
        items = self.items
        self._read([k for k in keys if k in items and items[k].done and items[k].acc >= 0])

    def idle(self) -> bool:
        """No item is held (the state at the end of every model step)."""
        return not self.items

    # ---- instructions ----------------------------------------------------------------------
    def _read(self, keys, spill: bool = False) -> None:
        """Read ``keys`` (completed ones for good, in their parts; others as spills) and free
        their slots."""
        units = []
        for key in keys:
            it = self.items[key]
            parts = it.parts if it.done and it.parts else ((it.mask, it.dst),)
            units += [(k, mask, dst, it.acc) for k, (mask, dst) in enumerate(parts)]
        self._emit(Op.RD_MAC, units)
        for key in keys:
            item = self.items[key]
            self.slots[item.acc] = None
            item.acc = -1
            if item.done:
                del self.items[key]
            else:
                assert spill, "only spills read items in progress"
                item.spilled = True

    def _transfer(self, op: Op, keys) -> None:
        """``RD_MAC`` (or ``WR_BIAS``) of whole items ``keys``."""
        self._emit(op, [(0, self.items[k].mask, self.items[k].dst, self.items[k].acc)
                        for k in keys])

    def _emit(self, op: Op, units) -> None:
        """``RD_MAC`` (or ``WR_BIAS``) of ``units = [(part, mask, dst, acc), ...]``: one
        instruction per run of consecutive accumulators with one channel mask whose destinations
        follow at the selected-bank stride (units ordered by part, then accumulator)."""
        if not units:
            return
        field = "dst" if op is Op.RD_MAC else "src"
        runs: list = []
        for _part, mask, dst, acc in sorted(units, key=lambda u: (u[0], u[3])):
            if runs:
                r = runs[-1]
                stride = _popcount(r[0]) * self.B
                if mask == r[0] and acc == r[2] + r[3] and dst == r[1] + r[3] * stride:
                    r[3] += 1
                    continue
            runs.append([mask, dst, acc, 1])
        for mask, dst, acc, n in runs:
            self.rec.emit(op, ch_mask=mask, **{field: dst}, acc=acc, nacc=n)
