"""``pimgpt run --backend rtl --waves FILE.vcd --waves-window FIRST:LAST``: the cut of a VCD by
program cycles (sim/cocotb_lib/vcd_window.py), on dumps written here in the layout Verilator
writes (a ``TOP`` scope with the ports, the design's scopes below)."""

from __future__ import annotations

import pytest

from pimgpt.sim.cocotb_lib.vcd_window import VcdWindowError, crop_vcd, parse_window

HEADER = """$date today $end
$timescale 1ps $end
$scope module TOP $end
$var wire 1 ! clk $end
$var wire 48 " cycles [47:0] $end
$scope module system $end
$var wire 48 # cycles [47:0] $end
$var wire 8 $ data [7:0] $end
$var wire 1 % flag $end
$upscope $end
$upscope $end
$enddefinitions $end
"""


def dump(tmp_path, cycles: int = 10, start: int = 3):
    """A run whose program starts at time step ``start`` (cycles counts 0, 1, ... from there;
    x before reset); ``data`` = 2 * cycle + 1 changes every cycle, ``flag`` at cycle 4 only."""
    lines = [HEADER, "#0\n$dumpvars\n0!\nbx \"\nbx #\nbx $\n0%\n$end\n"]
    for t in range(1, start + cycles):
        c = t - start
        lines.append(f"#{1000 * t}\n")
        if c >= 0:
            lines.append(f"b{c:b} \"\nb{2 * c + 1:b} $\n")
        if c == 4:
            lines.append("1%\n")
    p = tmp_path / "whole.vcd"
    p.write_text("".join(lines))
    return p


def body(path) -> list[str]:
    text = path.read_text()
    assert text.startswith(HEADER)  # every signal stays declared
    return text[len(HEADER):].splitlines()


def test_window_starts_with_every_value_and_ends_at_its_last_cycle(tmp_path):
    out = tmp_path / "cut.vcd"
    assert crop_vcd(dump(tmp_path), out, 5, 7) == 3
    lines = body(out)
    # program cycle 5 is time step 8 (start 3); the state there: flag set at cycle 4, data 11
    assert lines[0] == "#8000" and lines[1] == "$dumpvars"
    state = dict((ln[-1], ln[:-1].strip()) for ln in lines[2:lines.index("$end")])
    assert state == {"!": "0", '"': "b101", "#": "bx", "$": "b1011", "%": "1"}
    rest = lines[lines.index("$end") + 1:]
    assert rest == ["#9000", 'b110 "', "b1101 $", "#10000", 'b111 "', "b1111 $"]


def test_window_past_the_end_keeps_what_ran_and_before_the_start_is_refused(tmp_path):
    whole = dump(tmp_path, cycles=10)
    out = tmp_path / "cut.vcd"
    assert crop_vcd(whole, out, 8, 100) == 2  # cycles 8 and 9
    assert body(out)[0] == "#11000"
    with pytest.raises(VcdWindowError, match="the program ended before cycle 10; choose a "
                                             "window inside its cycles"):
        crop_vcd(whole, out, 10, 20)
    assert not out.exists()


def test_cycle_zero_is_the_program_start(tmp_path):
    out = tmp_path / "cut.vcd"
    assert crop_vcd(dump(tmp_path, start=5), out, 0, 0) == 1
    lines = body(out)
    assert lines[0] == "#5000" and 'b0 "' in lines and lines[-1] == "$end"


def test_a_dump_without_the_cycle_counter_is_refused(tmp_path):
    p = tmp_path / "other.vcd"
    p.write_text(HEADER.replace(" cycles ", " count ") + "#0\n")
    with pytest.raises(VcdWindowError, match="no 'cycles' signal"):
        crop_vcd(p, tmp_path / "cut.vcd", 0, 1)


@pytest.mark.parametrize("text, words", [
    ("5", "give FIRST:LAST program cycles"), ("a:b", "give FIRST:LAST"),
    ("-1:5", "give FIRST:LAST"), ("9:5", "the first cycle is after the last")])
def test_parse_window(text, words):
    assert parse_window("100:2000") == (100, 2000)
    with pytest.raises(VcdWindowError, match=words):
        parse_window(text)
