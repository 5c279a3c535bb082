"""Hypothesis fuzzing of every loader and of the executors: every failure is a ``PimgptError``.

Fuzzed: the hardware config (mutations of a preset, and raw YAML bytes), the model YAML loader,
the checkpoint loader (random safetensors headers, shapes, dtypes, data and truncations; random
``config.json``) and the golden executor (and the perf engine) on decoded random programs. Each
example must either succeed, with values that satisfy the loader's contract, or raise a
:class:`~pimgpt.core.errors.PimgptError`, within a time bound (and, for the executor, a memory
bound). The example counts are the ``max_examples`` below (docs/reliability.md lists them).
"""

from __future__ import annotations

import copy
import json
import math
import signal
import struct
import time
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest
import yaml
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from pimgpt.core.config import (
    ENERGY_KEYS,
    MAX_CYCLES,
    TIMING_MIN,
    HwConfig,
    hw_from_dict,
    load_hw,
)
from pimgpt.core.errors import PimgptError
from pimgpt.core.isa import FIELDS, HEADER, INSTR, MAGIC, VALID_FLAGS, VERSION, I, Op, decode
from pimgpt.core.progcheck import check_program
from pimgpt.sim.golden import GoldenMachine
from pimgpt.sim.perf.engine import PerfEngine
from pimgpt.sw.checkpoint import config_from_yaml, load_weights, random_weights, save_checkpoint
from pimgpt.sw.mapper import map_model
from pimgpt.sw.models import SHAPE_LIMITS, ModelConfig

#: Example counts (also reported in docs/reliability.md).
N_HW_DICT, N_HW_BYTES, N_TIMING, N_MODEL, N_CKPT, N_GOLDEN, N_PERF = (
    300, 150, 100, 200, 200, 400, 100)
#: Seconds one example may take (they take milliseconds; CI machines are shared).
EXAMPLE_SECONDS = 5.0
#: Bytes the golden executor may allocate on one fuzzed program (its machine is ~0.2 MB).
GOLDEN_PEAK_BYTES = 16 * 2**20

PRESET = load_hw("tiny-rtl").raw


class Hang(Exception):
    """An example ran past its time (raised by the alarm, so a hang fails instead of hanging)."""


@contextmanager
def time_limit(seconds: float = EXAMPLE_SECONDS):
    def alarm(signum, frame):
        raise Hang(f"ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)

# Values a hostile YAML can hold.
HOSTILE = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**32 - 1, 2**63, 10**12, 3, 5, 7, 100, 4096, 65536]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, 0.5]),
    st.booleans(), st.none(), st.text(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(),
                                                         max_size=2),
)


def _paths(raw, prefix=()):
    for k, v in raw.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(PRESET))


@st.composite
def mutated_hw(draw):
    raw = copy.deepcopy(PRESET)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        node = raw
        for p in path[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                break
        if not isinstance(node, dict):
            continue
        action = draw(st.sampled_from(["near", "near", "near", "set", "set", "delete", "add"]))
        old = node.get(path[-1])
        if action == "near" and isinstance(old, (int, float)) and not isinstance(old, bool):
            # A plausible value near the old one: most stay valid and reach the simulators.
            new = old * draw(st.sampled_from([0, 0.5, 1, 2, 4, 16])) + draw(st.integers(-2, 2))
            node[path[-1]] = type(old)(new)
        elif action in ("near", "set"):
            node[path[-1]] = draw(HOSTILE)
        elif action == "delete":
            node.pop(path[-1], None)
        else:
            node[draw(st.text(min_size=1, max_size=6))] = draw(HOSTILE)
    return raw


def _check_hw_invariants(hw: HwConfig) -> None:
    d, a = hw.dram, hw.asic
    for v in (d.tck_ns, d.io_gbps_per_pin, a.clock_ghz, *hw.energy.values()):
        assert isinstance(v, float) and math.isfinite(v)
    assert d.tck_ns > 0 and d.io_gbps_per_pin > 0 and a.clock_ghz > 0
    assert 1 <= d.channels <= 32 and d.banks % d.bank_groups == 0
    assert d.row_bytes & (d.row_bytes - 1) == 0 and 32 <= d.gb_bytes <= d.row_bytes
    assert set(hw.timing) == set(TIMING_MIN)
    for k, v in hw.timing.items():
        assert isinstance(v, int) and TIMING_MIN[k] <= v <= MAX_CYCLES
    assert hw.timing["nREFI"] > hw.timing["nRFC"]
    assert set(hw.energy) <= set(ENERGY_KEYS)


#: A program that fits every valid config: a MAC into accumulator 0 of bank 0 of channel 0.
SMALL_PROGRAM = [
    I(Op.WR_GB, ch_mask=1, gb_col=0, ncols=1, src=0),
    I(Op.MAC_SBK, ch_mask=1, bank=0, row=0, col=0, ncols=1, gb_col=0, acc=0),
    I(Op.MAC_ABK, ch_mask=1, row=0, col=0, ncols=1, gb_col=0, acc=0),
    I(Op.RD_SBK, ch=0, bank=0, row=0, elem=0, n=16, dst=0),
    I(Op.SYNC),
]
SMALL_PROGRAM = SMALL_PROGRAM + [I(Op.EOC)]


@settings(max_examples=N_HW_DICT)
@given(mutated_hw())
def test_fuzz_hardware_config(raw):
    t0 = time.perf_counter()
    try:
        hw = hw_from_dict(raw, "fuzz")
    except PimgptError:
        event("refused")
        return
    event("accepted")
    _check_hw_invariants(hw)
    # An accepted config runs: the timings make progress (the perf engine ends, quickly).
    try:
        check_program(SMALL_PROGRAM, hw)
        with time_limit():
            PerfEngine(hw).run(SMALL_PROGRAM)
            GoldenMachine(hw).run(SMALL_PROGRAM)
    except PimgptError:
        pass
    assert time.perf_counter() - t0 < EXAMPLE_SECONDS


@settings(max_examples=N_TIMING)
@given(st.fixed_dictionaries({k: st.one_of(st.integers(lo, lo + 3), st.integers(lo, 400))
                              for k, lo in TIMING_MIN.items()}))
def test_fuzz_timings_make_progress(timing):
    """Any accepted set of timings lets the perf engine finish a program (no refresh livelock)."""
    raw = copy.deepcopy(PRESET)
    raw["timing"] = timing
    try:
        hw = hw_from_dict(raw, "fuzz")
    except PimgptError:
        event("refused")
        return
    event("accepted")
    with time_limit():
        res = PerfEngine(hw).run(SMALL_PROGRAM[:-1] * 3 + SMALL_PROGRAM)
    assert res.cycles > 0


@settings(max_examples=N_HW_BYTES)
@given(st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    mutated_hw().map(lambda r: yaml.safe_dump(r).encode()),
    st.builds(lambda b, i: yaml.safe_dump(PRESET).encode()[:i] + b, st.binary(max_size=4),
              st.integers(0, 4000)),
))
def test_fuzz_hardware_yaml_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("hw") / "hw.yaml"
    path.write_bytes(data)
    try:
        hw = load_hw(path)
    except PimgptError:
        event("refused")
        return
    event("accepted")
    _check_hw_invariants(hw)


#: Plausible and boundary values of each model key (and a key that does not exist).
MODEL_VALUES = {
    "name": st.text(max_size=8),
    "n_layer": st.sampled_from([1, 2, 12, 1024, 1025]),
    "d_model": st.sampled_from([16, 32, 64, 48, 768, 2**16, 2**17]),
    "n_head": st.sampled_from([1, 2, 3, 4, 12]),
    "ctx": st.sampled_from([1, 8, 64, 2048, 2**20, 2**20 + 1]),
    "vocab": st.sampled_from([1, 256, 50257, 2**22, 2**22 + 1]),
    "d_ff": st.sampled_from([0, 64, 3072, 2**18, 2**18 + 1]),
    "ln_eps": st.sampled_from([1e-5, 0.5, 1.0, 0.0, float("nan"), "1e-5", "x"]),
    "checkpoint": st.sampled_from(["", "nowhere", "/"]),
    "bogus": st.integers(),
}


@st.composite
def model_yaml(draw):
    good = {"n_layer": 2, "d_model": 64, "n_head": 4, "ctx": 64, "vocab": 256}
    raw = dict(good) if draw(st.integers(0, 4)) else {}
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.sampled_from(sorted(MODEL_VALUES)))
        raw[k] = draw(MODEL_VALUES[k] if draw(st.integers(0, 3)) else HOSTILE)
    return raw


@settings(max_examples=N_MODEL)
@given(model_yaml())
def test_fuzz_model_yaml(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("model") / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    t0 = time.perf_counter()
    try:
        cfg = config_from_yaml(path)
    except PimgptError:
        event("refused")
        return
    event("accepted")
    for key, most in SHAPE_LIMITS.items():
        v = getattr(cfg, key)
        assert isinstance(v, int) and 1 <= v <= most
    assert 0 < cfg.ln_eps < 1 and cfg.d_model % cfg.n_head == 0
    try:  # whatever the shape, placing it is quick: it fits or it is refused
        with time_limit():
            map_model(cfg, load_hw())
    except PimgptError:
        pass
    assert time.perf_counter() - t0 < EXAMPLE_SECONDS


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
SMALL = ModelConfig("small", n_layer=1, d_model=16, n_head=1, ctx=4, vocab=8)
DTYPES = ["F32", "F16", "BF16", "F64", "I32", "U8", "BOOL", "F8_E4M3", "X", ""]


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(SMALL, random_weights(SMALL, 1), d)
    return d


def mutate_safetensors(draw, good: bytes) -> bytes:
    """A damaged copy of a safetensors file: truncated, bytes flipped, or its header edited."""
    kind = draw(st.sampled_from(["truncate", "flip", "header", "poison"]))
    (n,) = struct.unpack("<Q", good[:8])
    if kind == "truncate":
        return good[:draw(st.integers(0, len(good)))]
    if kind == "poison":  # a NaN, an infinity or a value beyond bf16 in some F32 weight
        blob = bytearray(good)
        at = 8 + n + 4 * draw(st.integers(0, (len(good) - 8 - n) // 4 - 1))
        value = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 3.4e38]))
        blob[at:at + 4] = struct.pack("<f", value)
        return bytes(blob)
    if kind == "flip":
        blob = bytearray(good)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] = draw(st.integers(0, 255))
        return bytes(blob)
    header = json.loads(good[8:8 + n])
    for _ in range(draw(st.integers(1, 3))):
        names = [k for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
        if not names:
            break
        name = draw(st.sampled_from(names))
        entry = header[name]
        what = draw(st.sampled_from(["dtype", "shape", "offsets", "drop", "junk"]))
        if what == "dtype":
            entry["dtype"] = draw(st.sampled_from(DTYPES))
        elif what == "shape":
            entry["shape"] = draw(st.lists(st.integers(-2, 70), max_size=3))
        elif what == "offsets":
            entry["data_offsets"] = draw(st.lists(st.integers(-5, 2**40), min_size=2,
                                                  max_size=2))
        elif what == "drop":
            header.pop(name)
        else:
            header[name] = draw(HOSTILE)
    text = json.dumps(header).encode()
    body = good[8 + n:]
    return struct.pack("<Q", len(text)) + text + body[:draw(st.integers(0, len(body)))]


@settings(max_examples=N_CKPT)
@given(st.data())
def test_fuzz_checkpoint(good_checkpoint, tmp_path_factory, data):
    import shutil

    d = tmp_path_factory.mktemp("bad")
    shutil.copytree(good_checkpoint, d, dirs_exist_ok=True)
    good = (good_checkpoint / "model.safetensors").read_bytes()
    target = data.draw(st.sampled_from(["weights", "weights", "weights", "config"]))
    if target == "weights":
        (d / "model.safetensors").write_bytes(mutate_safetensors(data.draw, good))
    else:
        cfg = json.loads((good_checkpoint / "config.json").read_text())
        for _ in range(data.draw(st.integers(1, 3))):
            cfg[data.draw(st.sampled_from(sorted(cfg)))] = data.draw(HOSTILE)
        (d / "config.json").write_text(json.dumps(cfg))
    t0 = time.perf_counter()
    try:
        from pimgpt.sw.checkpoint import config_from_dir

        with time_limit():
            cfg = config_from_dir(d)
            weights = load_weights(cfg)
    except PimgptError:
        event("refused")
        return
    finally:
        assert time.perf_counter() - t0 < EXAMPLE_SECONDS
    event("accepted")
    for arr in weights.values():  # accepted weights are whole and finite
        assert arr.dtype == np.float32 and np.isfinite(arr).all()


# ---------------------------------------------------------------------------------------------
# Executors on decoded random programs
# ---------------------------------------------------------------------------------------------
def _fuzz_hw():
    raw = copy.deepcopy(PRESET)
    raw["dram"].update(channels=2, banks=4, rows=64, row_bytes=256, gb_bytes=128, bank_groups=1,
                       accumulators=2)
    raw["asic"]["scratchpad_words"] = 4096
    return hw_from_dict(raw, "fuzz-small")


FUZZ_HW = _fuzz_hw()
FD = FUZZ_HW.dram
OPS = st.sampled_from(list(Op))
HOSTILE_FIELD = st.one_of(
    st.sampled_from([FD.channels, FD.banks, FD.rows, 16, 255, 4095, 4096, 2**31, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)
#: Valid values of each field on FUZZ_HW (most instructions then run: the executors go deep).
VALID_FIELD = {
    "ch_mask": st.integers(1, 3), "ch": st.integers(0, 1), "bank": st.integers(0, 3),
    "row": st.integers(0, 63), "col": st.integers(0, 3), "ncols": st.integers(1, 4),
    "gb_col": st.integers(0, 0), "acc": st.integers(0, 1), "nacc": st.integers(1, 1),
    "elem": st.integers(0, 64), "n": st.integers(1, 64), "vec": st.integers(0, 15),
    "region_row": st.integers(0, 8), "n_local": st.integers(1, 2),
    "vec_len": st.sampled_from([16, 32, 64]), "k": st.integers(1, 4), "rows": st.integers(1, 3),
    "reg": st.integers(0, 15), "imm": st.integers(0, 40),
}
SP_FIELD = st.integers(0, 3900)  # scratchpad addresses (dst, src, a, b, gamma, beta)
F32_FIELD = st.integers(0, 2**32 - 1)  # any bit pattern: NaN, Inf, subnormals


def _field(draw, name: str, hostile: bool) -> int:
    if hostile:
        return draw(HOSTILE_FIELD)
    if name.endswith("_f32"):
        return draw(F32_FIELD)
    return draw(VALID_FIELD.get(name, SP_FIELD))


@st.composite
def program_blob(draw):
    """A binary program: mostly valid instructions, sometimes one hostile field or flag."""
    words = []
    for _ in range(draw(st.integers(0, 12))):
        op = draw(OPS)
        names = FIELDS[op]
        bad = draw(st.integers(0, 9 * len(names)))  # a hostile field in 1 of 10 instructions
        slots = [_field(draw, name, i == bad) for i, name in enumerate(names)]
        slots += [0] * (7 - len(names))
        flags = draw(st.sampled_from([0, VALID_FLAGS[op]]))
        words.append(INSTR.pack(int(op), flags, *slots))
    if draw(st.integers(0, 9)):
        words.append(INSTR.pack(int(Op.EOC), 0, *[0] * 7))
    return HEADER.pack(MAGIC, VERSION, 0, len(words)) + b"".join(words)


@settings(max_examples=N_GOLDEN)
@given(program_blob(), st.integers(0, 3))
def test_fuzz_golden_executor(blob, seed):
    try:
        program = decode(blob, "fuzz")
    except PimgptError:
        event("not decoded")
        return
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 0x10000, (FD.channels, FD.banks, 4, FD.row_elems), dtype=np.uint16)
    machine = GoldenMachine(FUZZ_HW, image)
    machine.sp[:] = rng.standard_normal(machine.sp.size).astype(np.float32)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with time_limit():
            machine.run(program)
        event("ran to EOC")
    except PimgptError:
        event("refused")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < EXAMPLE_SECONDS
    assert peak < GOLDEN_PEAK_BYTES


@settings(max_examples=N_PERF)
@given(program_blob())
def test_fuzz_perf_engine_on_checked_programs(blob):
    """The perf engine on programs that pass the operand checks: it ends, or refuses cleanly."""
    try:
        program = decode(blob, "fuzz")
        check_program(program, FUZZ_HW)
    except PimgptError:
        return
    assume(program and program[-1].op is Op.EOC)
    t0 = time.perf_counter()
    try:
        with time_limit():
            PerfEngine(FUZZ_HW).run(program)
        event("simulated")
    except PimgptError:
        event("refused")
    assert time.perf_counter() - t0 < EXAMPLE_SECONDS
