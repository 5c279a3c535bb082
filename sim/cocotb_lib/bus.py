"""Bus objects: the DUT signals of one port, and payload packing from the RTL's own layouts.

After cocotbext-axi's ``AxiStreamBus``: a bus object names the signals of one port once, so that
drivers and monitors take a bus instead of a handle and a string each. Amaranth exports a
``data.Struct`` port as one flat vector and a stream as ``<port>__payload``/``__valid``/``__ready``;
:class:`Codec` packs and unpacks such vectors from the Amaranth layout that defines them (for
example :func:`pimgpt.hdl.system.host_cmd_layout`), so a testbench never repeats a field offset.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["Ports", "StreamBus", "Codec"]


class Ports:
    """The ports of one block inside a harness top level (``<prefix><port>``).

    ``clk`` and ``rst`` are the top level's own (one clock domain for every block of a harness).

    Parameters
    ----------
    dut : cocotb handle
        Top level.
    prefix : str
        Port name prefix of the block (``""`` for a block that is the top level itself).
    """

    def __init__(self, dut, prefix: str = ""):
        self._dut, self._prefix = dut, prefix
        self.clk, self.rst = dut.clk, dut.rst

    def __getattr__(self, name):
        return getattr(self._dut, self._prefix + name)

    @property
    def _log(self):
        return self._dut._log


class StreamBus:
    """The signals of an Amaranth stream port: ``payload``, ``valid`` and, if present, ``ready``.

    Parameters
    ----------
    dut : cocotb handle or Ports
        Where the signals are.
    prefix : str
        Port name (``i`` for ``i__payload``/``i__valid``).
    """

    def __init__(self, dut, prefix: str):
        self.name = prefix
        self.payload = getattr(dut, f"{prefix}__payload")
        self.valid = getattr(dut, f"{prefix}__valid")
        try:
            self.ready = getattr(dut, f"{prefix}__ready")
        except AttributeError:  # the pimgpt datapaths mostly have no back-pressure
            self.ready = None

    def sample(self) -> int | None:
        """The payload if ``valid`` is high now, else ``None``."""
        valid = self.valid.value
        if valid.is_resolvable and int(valid):
            return self.payload.value.to_unsigned()
        return None


class Codec:
    """Pack and unpack the integer of an Amaranth data layout, field offsets read from the layout.

    Nested layouts take a mapping (struct) or a sequence (array); enum-typed fields take the enum
    member or its value.

    Parameters
    ----------
    layout : amaranth.lib.data.Layout or ShapeCastable
        The layout (``data.StructLayout``, ``data.ArrayLayout`` or a ``data.Struct`` class).
    """

    def __init__(self, layout):
        self.layout = data.Layout.cast(layout)
        self.width = self.layout.size
        self._fields: dict = {}
        for key, field in self.layout:
            shape = field.shape
            sub = None
            if isinstance(shape, data.Layout) or (
                    isinstance(shape, type) and issubclass(shape, data.View)):
                sub = Codec(shape)
            self._fields[key] = (field.offset, Shape.cast(shape).width, sub)

    @property
    def fields(self) -> list:
        """Field names (struct) or indices (array), in layout order."""
        return list(self._fields)

    def pack(self, fields: Mapping | Sequence | None = None, /, **named) -> int:
        """The integer whose bit fields hold the given values (unnamed fields are 0).

        Raises
        ------
        KeyError
            For a name the layout does not have.
        ValueError
            For a value that does not fit its field.
        """
        if isinstance(fields, Mapping):
            items = {**fields, **named}.items()
        elif fields is not None:
            items = list(enumerate(fields)) + list(named.items())
        else:
            items = named.items()
        value = 0
        for key, v in items:
            if key not in self._fields:
                raise KeyError(f"no field {key!r} in {self.layout!r}; fields: {self.fields}")
            offset, width, sub = self._fields[key]
            if sub is not None and isinstance(v, (Mapping, Sequence)):
                v = sub.pack(v)
            elif isinstance(v, enum.Enum):
                v = v.value
            v = int(v)
            if not 0 <= v < 1 << width:
                raise ValueError(f"field {key!r} = {v} does not fit its {width} bits")
            value |= v << offset
        return value

    def unpack(self, value: int) -> dict:
        """Field values of ``value`` (nested layouts as nested dicts)."""
        value = int(value)
        out = {}
        for key, (offset, width, sub) in self._fields.items():
            v = (value >> offset) & ((1 << width) - 1)
            out[key] = sub.unpack(v) if sub is not None else v
        return out

    def get(self, value: int, key) -> int:
        """One field of ``value``, as an integer."""
        offset, width, _ = self._fields[key]
        return (int(value) >> offset) & ((1 << width) - 1)
