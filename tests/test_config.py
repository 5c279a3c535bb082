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
    (lambda r: r["dram"].pop("channels"), "missing key 'channels' in dram:"),
    (lambda r: r["dram"].update(banks=-4), "'dram.banks' must be an integer in 1..256, got -4"),
    (lambda r: r["dram"].update(rows="many"), "'dram.rows' must be an integer in 1..1048576"),
    (lambda r: r["dram"].update(column_bytes=64), "'dram.column_bytes' must be 32, got 64"),
    (lambda r: r["dram"].update(row_bytes=3000), "'dram.row_bytes' must be an integer in "
                                                 "32..65536 and a power of two, got 3000"),
    (lambda r: r["dram"].update(gb_bytes=4096), "gb_bytes must be a multiple of 32 and at most"),
    (lambda r: r["dram"].update(gb_bytes=100), "and a multiple of 32, got 100"),
    (lambda r: r["dram"].update(bank_groups=3), "banks (16) must divide into bank_groups (3)"),
    (lambda r: r["dram"].update(channels=33), "'dram.channels' must be an integer in 1..32"),
    (lambda r: r["dram"].update(act_overlap="yes"), "'dram.act_overlap' must be true or false"),
    (lambda r: r["dram"].update(channels=8.0), "'dram.channels' must be an integer"),
    (lambda r: r["dram"].update(tck_ns=float("nan")), "'dram.tck_ns' must be a finite number"),
    (lambda r: r["dram"].update(tck_ns=float("inf")), "'dram.tck_ns' must be a finite number"),
    (lambda r: r["dram"].update(tck_ns=0), "'dram.tck_ns' must be a finite number in 0.001..1000"),
    (lambda r: r["dram"].update(accumulators=0), "'dram.accumulators' must be an integer in 1.."),
    (lambda r: r["dram"].update(chanels=4), "unknown keys ['chanels'] in dram: (did you mean "
                                            "'channels'?)"),
    (lambda r: r["asic"].update(clock_ghz=float("nan")), "'asic.clock_ghz' must be a finite"),
    (lambda r: r["asic"].update(lanes=4), "unknown keys ['lanes'] in asic:"),
    (lambda r: r["asic"].update(vector_lanes=48), "'asic.vector_lanes' must be an integer in "
                                                  "16..128 and a power of two"),
    (lambda r: r["asic"].update(vector_units=3), "'asic.vector_units' must be an integer in 1..8 "
                                                 "and a power of two"),
    (lambda r: r["asic"].update(vector_units=16), "'asic.vector_units' must be an integer in 1..8"),
    (lambda r: r["asic"].update(fp_add_latency=0), "'asic.fp_add_latency' must be an integer in 1"),
    (lambda r: r["asic"].pop("sp_read_latency"), "missing key 'sp_read_latency' in asic:"),
    (lambda r: r["asic"].update(scratchpad_words=2**40), "'asic.scratchpad_words' must be an "
                                                         "integer in 16..16777216"),
    (lambda r: r.update(chanels=4), "unknown keys ['chanels'] in the top level"),
    (lambda r: r.update(name=["x"]), "'name' must be a non-empty string"),
    (lambda r: r["timing"].update(nFOO=3), "unknown keys ['nFOO'] in timing:"),
    (lambda r: r["timing"].update(nRP=-1), "'timing.nRP' must be an integer in 0..1000000"),
    (lambda r: r["timing"].update(nBL=0), "'timing.nBL' must be an integer in 1..1000000"),
    (lambda r: r["timing"].update(nREFI=0), "'timing.nREFI' must be an integer in 1.."),
    (lambda r: r["timing"].update(nREFI=331), "timing.nREFI (331) must exceed nRFC + nRP + nRC "
                                              "(331)"),
    (lambda r: r["timing"].update(nCL=10**12), "'timing.nCL' must be an integer in 0..1000000"),
    (lambda r: r["energy"].update(act_pj=float("nan")), "'energy.act_pj' must be a finite number"),
    (lambda r: r["energy"].update(ref_pj=-1.0), "'energy.ref_pj' must be a finite number in 0"),
    (lambda r: r["energy"].update(act_pjj=1.0), "unknown keys ['act_pjj'] in energy: (did you "
                                                "mean 'act_pj'?)"),
    (lambda r: r.update(energy=[1]), "bad section 'energy:'"),
    (lambda r: r.update(dram=None), "bad section 'dram:'"),
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


def test_hw_variant_replaces_keys_and_validates():
    from pimgpt.core.config import hw_variant

    hw = load_hw("pimgpt-gddr6-32ch")
    v = hw_variant(hw, "asic", vector_units=2)
    assert (v.name, v.asic.vector_units, v.dram.channels) == (hw.name, 2, 32)
    assert hw.asic.vector_units == 8  # the original is untouched
    with pytest.raises(ConfigError, match="'asic.vector_units' must be an integer in 1..8"):
        hw_variant(hw, "asic", vector_units=3)
