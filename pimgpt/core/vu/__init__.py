"""The vector unit's micro-architecture: micro-ISA, assembler, routines, ISS and cost.

* :mod:`.uisa` -- the micro-instruction set: the 64-bit micro-word (one field table that encodes,
  decodes and yields the Amaranth layout), the micro-operations and the cycle rules.
* :mod:`.asm` -- the assembler: labels, hardware loops, unrolled blocks scheduled by latency and
  register allocation.
* :mod:`.routines` -- the routine of every ASIC instruction for ``W`` lanes (the microcode ROM).
* :mod:`.iss` -- the instruction-set simulator: bit-exact (the reference of the RTL) and
  timing-only (the cost model's source).
* :mod:`.cost` -- cycles, fp operations and scratchpad words of every vector instruction, for the
  perf engine and the compiler.
"""
