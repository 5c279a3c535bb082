"""Hardware configs: presets load, derived sizes are right, every kind of bad value is refused."""

import copy

import pytest
import yaml

from pimgpt.core.config import ConfigError, hw_from_dict, hw_presets, load_hw


def test_presets_load_and_derive():
    assert {"pimgpt-gddr6-8ch", "tiny-rtl"} <= set(hw_presets())
    hw = load_hw()
    assert hw.name == "pimgpt-gddr6-8ch"
    d = hw.dram
    assert (d.channels, d.banks, d.rows, d.row_elems, d.gb_elems, d.slots) == (
        8, 16, 16384, 1024, 1024, 128)
    assert d.capacity_bytes == 8 * 16 * 16384 * 2048
    assert d.channel_gbytes_per_s == 32.0
    assert hw.timing["nRCDRDMAC"] == 56 and hw.timing["nRP"] == 32


def _raw():
    return copy.deepcopy(load_hw().raw)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["dram"].pop("channels"), "missing key 'channels'"),
    (lambda r: r["dram"].update(banks=-4), "'banks' must be positive"),
    (lambda r: r["dram"].update(rows="many"), "'rows' must be an integer"),
    (lambda r: r["dram"].update(column_bytes=64), "column_bytes must be 32"),
    (lambda r: r["dram"].update(row_bytes=3000), "row_bytes must be a power of two"),
    (lambda r: r["dram"].update(gb_bytes=4096), "gb_bytes must be a multiple of 32 and at most"),
    (lambda r: r["timing"].update(nFOO=3), "unknown keys ['nFOO']"),
    (lambda r: r["timing"].update(nRP=-1), "'nRP' must be >= 0"),
    (lambda r: r.pop("asic"), "missing section 'asic:'"),
])
def test_bad_values_are_refused(mutate, message):
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        hw_from_dict(raw, "test.yaml")
    assert message in str(exc.value)


def test_yaml_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "hw.yaml"
    raw = _raw()
    raw["dram"]["channels"] = 4
    path.write_text(yaml.safe_dump(raw))
    assert load_hw(path).dram.slots == 64
    with pytest.raises(ConfigError, match="no such file"):
        load_hw(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown hardware preset 'nosuch'"):
        load_hw("nosuch")
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_hw(path)
