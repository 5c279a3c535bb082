"""The foundation layer: contracts every other layer consumes, defined once each.

* :mod:`.errors` -- the error class every user-facing error derives from.
* :mod:`.config` -- validated hardware configuration (YAML presets and files).
* :mod:`.fileio` -- atomic file writing.
* :mod:`.numerics` -- the bit-exact bf16/fp32 arithmetic contract (the MAC unit).
* :mod:`.nonlinear` -- the vector unit's functions, built from that arithmetic.
* :mod:`.isa` -- the instruction set: encoding, assembly and per-opcode metadata.
* :mod:`.dram` -- the PIM DRAM standard: commands, footprints and timing rows.

Nothing here imports from ``pimgpt.sw``, ``pimgpt.sim``, ``pimgpt.hdl`` or ``pimgpt.apps``.
"""
