"""The vector unit's micro-architecture: micro-ISA, assembler, routines, ISS and cost.

* :mod:`.uisa` -- the micro-instruction set: the 64-bit micro-word (one field table that encodes,
  decodes and yields the Amaranth layout), the micro-operations and the cycle rules.
* :mod:`.asm` -- the assembler: labels, hardware loops, unrolled blocks scheduled by latency and
  register allocation.
* :mod:`.routines` (with :mod:`.routines_fn`, :mod:`.routines_red`) -- the routine of every ASIC
  instruction for ``W`` lanes (the microcode ROM).
* :mod:`.iss` -- the instruction-set simulator: bit-exact (the reference of the RTL) and
  timing-only (the cost model's source).
* :mod:`.cost` -- the one definition of how long a vector-unit instruction takes and how much work
  it does, derived from the routines; the perf simulator and the compiler's scheduler both call it.
"""
