"""``pimgpt run --program``: the binary and the (edited) text form, on golden, perf and rtl; the
model and hardware of the program's memmap.yaml as defaults; contradicting options refused."""

import json
import shutil

import pytest

from pimgpt.apps.run_cli import run_model
from pimgpt.cli import main
from pimgpt.core.config import load_hw
from pimgpt.sw.compiler import compile_generation
from pimgpt.sw.models import get_model


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    """tiny on the default hardware, tiny on tiny-rtl, tiny-py: prompt 1,2 and 2 new tokens."""
    root = tmp_path_factory.mktemp("progs")
    for name, model, hw in (("tiny", "tiny", None), ("rtl", "tiny", "tiny-rtl"),
                            ("py", "tiny-py", None)):
        compile_generation(get_model(model), load_hw(hw), [1, 2], 2).write(root / name)
    return root


def _run(argv, tmp_path, capsys):
    """rc, stdout, stderr and the --stats JSON (None when the run fails)."""
    stats = tmp_path / "stats.json"
    stats.unlink(missing_ok=True)
    rc = main(["run", *map(str, argv), "--stats", str(stats)])
    out, err = capsys.readouterr()
    return rc, out, err, json.loads(stats.read_text()) if rc == 0 else None


def _error(argv, tmp_path, capsys) -> str:
    rc, out, err, _ = _run(argv, tmp_path, capsys)
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1, err
    assert not (tmp_path / "stats.json").exists()  # nothing written
    return lines[0]


def test_asm_runs_like_the_binary_on_golden(progs, tmp_path, capsys):
    rc, out, _, want = _run(["--program", progs / "tiny" / "program.bin"], tmp_path, capsys)
    assert rc == 0 and want["prompt"] == [1, 2] and len(want["tokens"]) == 2
    rc, out, _, got = _run(["--program", progs / "tiny" / "program.asm"], tmp_path, capsys)
    assert rc == 0 and "note:" not in out
    assert got["tokens"] == want["tokens"] and got["program_edited"] is False
    assert got["model"] == "tiny" and got["hw"] == "pimgpt-gddr6-8ch"


def test_edited_asm_runs_on_its_memmap(progs, tmp_path, capsys):
    """Editing the prompt token in the assembly gives the tokens of a compile of that prompt:
    the memory map (model, hardware) still fits, only the program's hash changed."""
    d = tmp_path / "p"
    shutil.copytree(progs / "tiny", d)
    text = (d / "program.asm").read_text()
    assert text.count("SETR reg=0 imm=1\n") == 1
    (d / "program.asm").write_text(text.replace("SETR reg=0 imm=1\n", "SETR reg=0 imm=7\n"))
    rc, out, _, got = _run(["--program", d / "program.asm"], tmp_path, capsys)
    assert rc == 0 and got["program_edited"] is True and got["prompt"] == [7, 2]
    assert "program.asm differs from the program compiled with its memmap.yaml (edited)" in out
    compile_generation(get_model("tiny"), load_hw(None), [7, 2], 2).write(tmp_path / "want")
    rc, _, _, want = _run(["--program", tmp_path / "want" / "program.bin"], tmp_path, capsys)
    assert got["tokens"] == want["tokens"]


def test_bad_asm_is_one_line_with_its_line_number(progs, tmp_path, capsys):
    d = tmp_path / "p"
    shutil.copytree(progs / "tiny", d)
    lines = (d / "program.asm").read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("MAC_ABK "))
    lines[k] = " ".join(w for w in lines[k].split() if not w.startswith("row="))
    (d / "program.asm").write_text("\n".join(lines) + "\n")
    line = _error(["--program", d / "program.asm"], tmp_path, capsys)
    assert f"program.asm:{k + 1}: MAC_ABK lacks row; add row=..." in line
    (d / "program.asm").write_text("SYNC\n")
    line = _error(["--program", d / "program.asm"], tmp_path, capsys)
    assert line.endswith("program.asm: the program does not end with EOC; it is truncated, add "
                         "an EOC line or recompile")
    # A binary with a text name is still read as a binary (its magic decides).
    shutil.copy(d / "program.bin", d / "other.asm")
    rc, _, _, st = _run(["--program", d / "other.asm"], tmp_path, capsys)
    assert rc == 0 and st["program_edited"] is False


@pytest.mark.parametrize("form", ["program.bin", "program.asm"])
def test_perf_runs_a_program_like_a_compiled_run(progs, tmp_path, capsys, form):
    rc, _, _, want = _run(["--backend", "perf", "--prompt", "1,2", "--new-tokens", "2"],
                          tmp_path, capsys)
    assert rc == 0
    rc, out, _, got = _run(["--backend", "perf", "--program", progs / "tiny" / form],
                           tmp_path, capsys)
    assert rc == 0 and "model tiny on pimgpt-gddr6-8ch: " in out and "  decode: 1 token(s)" in out
    assert got["cycles"] == want["cycles"] and got["energy_nj"] == pytest.approx(want["energy_nj"])
    assert got["prefill"]["tokens"] == 2 and got["decode"]["tokens"] == 1
    # The KV-cache capacity of its memmap.yaml (a compiled run without --context says None).
    assert got["context"] == 64 and got["program_edited"] is False
    if form == "program.asm":  # the tags of its comments: the same breakdown by kind
        assert got["breakdown_by_kind_ns"] == pytest.approx(want["breakdown_by_kind_ns"])


def test_rtl_runs_a_program_as_the_golden_model_does(progs, tmp_path, capsys):
    """The tiny-rtl program (text form) on the Verilog system: every logit bit-exact, the tokens
    of the golden run of the same file, the cycles within 1 % of perf's."""
    from pimgpt.sim.cocotb_lib.runner import simulator_available

    ok, why = simulator_available("verilator")
    if not ok:
        pytest.skip(f"verilator tests skipped: {why}")
    asm = progs / "rtl" / "program.asm"
    rc, _, _, golden = _run(["--program", asm], tmp_path, capsys)
    assert rc == 0
    cmds, tl = tmp_path / "cmds.csv", tmp_path / "t.json"
    rc, _, _, st = _run(["--backend", "rtl", "--program", asm, "--commands", cmds, "--timeline",
                         tl], tmp_path, capsys)
    assert rc == 0 and st["golden_match"] and st["hw"] == "tiny-rtl"
    assert st["tokens"] == golden["tokens"] and st["program_edited"] is False
    assert abs(st["cycle_difference"]) < 0.01
    # --commands: every command the protocol monitor counted, by channel, cycles in order
    rows = [line.split(",") for line in cmds.read_text().splitlines()]
    assert rows[0] == ["channel", "cycle", "command", "footprint_index"]
    for ch, n in st["dram_commands"].items():
        mine = [r for r in rows[1:] if r[0] == ch]
        assert len(mine) == n > 0
        assert [int(r[1]) for r in mine] == sorted(int(r[1]) for r in mine)
        per_cmd = {c: sum(1 for r in mine if r[2] == c) for c in {r[2] for r in mine}}
        assert per_cmd == {c: v["rtl"] for c, v in st["commands_rtl_vs_perf"][ch].items()
                           if v["rtl"]}
    # --timeline: per channel the register-mode visits and refreshes the monitors saw, MAC
    # trains covering every MAC command; every instruction's dispatch on the front end
    events = json.loads(tl.read_text())["traceEvents"]
    for ch in st["dram_commands"]:
        mine = [e for e in events if e["pid"] == int(ch) and e["ph"] in ("X", "i")]
        for name, cmd in (("register mode", "MODREG"), ("refresh", "REFab")):
            assert sum(e["name"] == name for e in mine) == sum(
                1 for r in rows[1:] if r[0] == ch and r[2] == cmd), name
        assert sum(e["args"]["columns"] for e in mine if e["name"] == "MAC train") == sum(
            1 for r in rows[1:] if r[0] == ch and r[2] in ("MAC", "MAC16")) > 0
    front = [e for e in events if e.get("cat") == "dispatch"]
    # (all but the last, the EOC that ends the run before the monitor samples its dispatch)
    assert {e["args"]["pc"] for e in front} == set(range(st["instructions"] - 1))
    assert asm.read_text().rstrip().splitlines()[-1].split()[0] == "EOC"
    line = _error(["--program", asm, "--commands", cmds], tmp_path, capsys)
    assert "--commands is not used by the golden backend" in line


def test_hardware_and_model_default_to_the_memmap(progs, tmp_path, capsys):
    rc, _, _, st = _run(["--program", progs / "rtl" / "program.bin"], tmp_path, capsys)
    assert rc == 0 and st["hw"] == "tiny-rtl" and st["model"] == "tiny"
    rc, _, _, same = _run(["--program", progs / "rtl" / "program.bin", "--hw", "tiny-rtl",
                           "-m", "tiny"], tmp_path, capsys)
    assert rc == 0 and same["tokens"] == st["tokens"]
    line = _error(["--program", progs / "rtl" / "program.bin", "--hw", "pimgpt-gddr6-8ch"],
                  tmp_path, capsys)
    assert "compiled for hardware 'tiny-rtl', not 'pimgpt-gddr6-8ch' as given" in line
    assert "drop --hw" in line
    # tiny has tiny-py's shape: the fingerprint passes, the name does not.
    line = _error(["--program", progs / "py" / "program.bin", "-m", "tiny"], tmp_path, capsys)
    assert line.endswith("memmap.yaml: the program was compiled for model 'tiny-py', not "
                         "'tiny'; drop -m")


def test_bad_names_in_memmap_name_the_file(progs, tmp_path, capsys):
    d = tmp_path / "p"
    shutil.copytree(progs / "tiny", d)
    mm = d / "memmap.yaml"
    text = mm.read_text()
    mm.write_text(text.replace("model: tiny\n", "model: no-such-model\n", 1))
    line = _error(["--program", d / "program.bin"], tmp_path, capsys)
    assert f"{mm}: model 'no-such-model' cannot be loaded" in line
    assert line.endswith("pass -m with the model the program was compiled for")
    mm.write_text(text.replace("hw: pimgpt-gddr6-8ch\n", "hw: no-such-hw\n", 1))
    line = _error(["--program", d / "program.bin"], tmp_path, capsys)
    assert f"{mm}: hardware 'no-such-hw' cannot be loaded" in line


def test_run_model_api_defaults_to_the_program(progs):
    res = run_model("golden", None, program=str(progs / "py" / "program.asm"))
    assert res.stats["model"] == "tiny-py" and res.stats["prompt"] == [1, 2]
    assert len(res.tokens) == 2 and res.stats["program_edited"] is False
