"""The vector unit's contract: its cost model (and, as it grows, its micro-architecture).

:mod:`.cost` is the one definition of how long a vector-unit instruction takes and how much
work it does; the perf simulator and the compiler's scheduler both call it.
"""
