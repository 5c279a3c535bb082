"""What a compiled program was made for: fingerprints of the model shape, hardware and program.

``pimgpt compile`` records them in ``memmap.yaml`` (key ``fingerprint``) beside ``program.bin``;
running a compiled program checks them, so a program compiled for other hardware or another model
shape is refused with one line instead of running and printing wrong tokens.

* model: the shape of the model (every :class:`~pimgpt.sw.models.ModelConfig` field except its
  name and checkpoint folder: a program does not depend on either).
* hw: every validated hardware value (DRAM organisation, timing, ASIC, energy) except the
  config's name; timing and costs shape the compiler's schedule.
* program: the bytes of ``program.bin``. Recorded, not required: the memory map describes the
  DRAM image of the model on the hardware, so an edited program (or its ``program.asm``, edited)
  for the same model and hardware runs on it; a run reports such a program as edited.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from pimgpt.core.errors import PimgptError

#: Hex digits kept of each SHA-256.
DIGITS = 16


class FingerprintError(PimgptError):
    """A compiled program does not belong to the model, hardware or memory map it is run with."""


def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGITS]


def model_fingerprint(cfg) -> str:
    """Fingerprint of a model's shape (name and checkpoint folder excluded)."""
    shape = dataclasses.asdict(cfg)
    shape.pop("name", None)
    shape.pop("checkpoint", None)
    return _digest(shape)


def hw_fingerprint(hw) -> str:
    """Fingerprint of a validated hardware config (its name excluded)."""
    values = dataclasses.asdict(hw)
    values.pop("name", None)
    values.pop("raw", None)
    return _digest(values)


def program_fingerprint(blob: bytes) -> str:
    """Fingerprint of a binary program (``program.bin`` bytes)."""
    return hashlib.sha256(blob).hexdigest()[:DIGITS]


def fingerprint(cfg, hw, blob: bytes) -> dict:
    """The ``fingerprint`` mapping written into ``memmap.yaml``."""
    return {"model": model_fingerprint(cfg), "hw": hw_fingerprint(hw),
            "program": program_fingerprint(blob)}


def check_fingerprint(info: dict, cfg, hw, source: str) -> None:
    """Check a ``memmap.yaml`` mapping against the model and hardware it is run with (what the
    DRAM image depends on; the program's own hash is not checked, see the module docstring).

    Parameters
    ----------
    info : dict
        The parsed ``memmap.yaml``.
    cfg, hw
        The model and hardware of the run.
    source : str
        The memory map's path, for messages.

    Raises
    ------
    FingerprintError
        Naming what differs and the fix.
    """
    got = info.get("fingerprint")
    if not isinstance(got, dict):
        raise FingerprintError(f"{source} has no fingerprint (made by an older pimgpt); "
                               "recompile with `pimgpt compile`")
    if got.get("hw") != hw_fingerprint(hw):
        raise FingerprintError(f"the program was compiled for hardware {info.get('hw')!r}, not "
                               f"{hw.name!r} as given ({source}); drop --hw (a program runs on "
                               "its own hardware) or pass the same --hw as at compile time")
    if got.get("model") != model_fingerprint(cfg):
        raise FingerprintError(f"the program was compiled for model {info.get('model')!r}, whose "
                               f"shape differs from {cfg.name!r}; pass the same --model as at "
                               "compile time")
