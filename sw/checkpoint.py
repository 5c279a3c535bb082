"""Model weights: Hugging Face checkpoints (GPT-2, Llama), random weights, model YAML files,
shipped models.

A checkpoint directory holds ``config.json`` (a Hugging Face ``GPT2Config`` or ``LlamaConfig``) and
``model.safetensors`` (or shards listed in ``model.safetensors.index.json``); F16, BF16, F32 and F64
tensors are widened to float32 exactly. :mod:`pimgpt.sw.hf_layout` maps the two layouts' keys and
tensor names to pimgpt's: GPT-2 tensor names may carry the ``transformer.`` prefix that
``GPT2LMHeadModel.save_pretrained`` writes or not (the original ``gpt2`` hub files); a tied
``lm_head.weight`` and buffers (causal masks, RoPE frequencies) are dropped. Weights are returned as
a ``dict[str, numpy.ndarray]`` of float32 arrays named as documented in :mod:`pimgpt.sw.models`
(``wte``, ``h.0.attn.c_attn.weight`` ... ``ln_f.weight``), matrices ``[in, out]``.

Files are read with ``safetensors`` (``safe_open``/``safetensors.numpy``) and ``json``/``yaml``
(``safe_load``) only, never pickle. Every problem raises :class:`~pimgpt.sw.models.ModelError` with
one line naming the file and the fix.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import fields
from importlib import resources
from pathlib import Path

import numpy as np

from pimgpt.core.fileio import Outputs, check_directory, read_text
from pimgpt.sw.hf_layout import (
    BUFFER_SUFFIXES,
    GPT2_PREFIX,
    check_tensors,
    config_from_hf,
    hf_config,
    layout,
    to_hf,
    to_pimgpt,
)
from pimgpt.sw.models import ModelConfig, ModelError, weight_shapes

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
#: Prefix of the decoder tensors in ``GPT2LMHeadModel`` files (written by :func:`save_checkpoint`).
HF_PREFIX = GPT2_PREFIX
# safetensors dtypes accepted as weights; all are widened to float32.
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_SHIPPED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ----------------------------------------------------------------------------------------------
# Tensor names and shapes
# ----------------------------------------------------------------------------------------------


#: The name and shape of every weight (an alias of :func:`pimgpt.sw.models.weight_shapes`).
expected_shapes = weight_shapes


def check_weights(cfg: ModelConfig, weights: dict, source: str = "weights") -> None:
    """Check that ``weights`` holds exactly the tensors of ``cfg`` with the right shapes.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.
    weights : dict of str to numpy.ndarray
        Weights in pimgpt names.
    source : str
        What to name in the error message (a file, or "weights").

    Raises
    ------
    ModelError
        Naming the first missing, unexpected or misshapen tensor.
    """
    check_tensors(weight_shapes(cfg), weights, source, cfg,
                  "pimgpt and GPT-2's Conv1D store matrices [in, out]")


#: The smallest float32 magnitude that rounds to infinity in bf16 (the weights' storage type):
#: 0x7F7F8000 lies half-way between the largest bf16 and infinity, and ties round to even (Inf).
BF16_OVERFLOW = float(np.array(0x7F7F8000, dtype=np.uint32).view(np.float32))


def check_finite(weights: dict, source: str = "weights") -> None:
    """Check that every weight is finite once stored as bf16 (no NaN, Inf or overflow).

    A single NaN or Inf weight makes every logit NaN, and the argmax of NaN logits is a token
    all the same: refusing such weights is the only way not to print wrong answers.

    Raises
    ------
    ModelError
        Naming the first bad tensor, how many values are bad and where the first one is.
    """
    for name, arr in weights.items():
        arr = np.asarray(arr)
        ok = np.abs(arr) < np.float32(BF16_OVERFLOW)  # False for NaN too
        if ok.all():
            continue
        bad = np.argwhere(~ok)
        first = tuple(int(i) for i in bad[0])
        raise ModelError(
            f"{source}: tensor {name} has {len(bad)} value(s) that are NaN, infinite or beyond "
            f"bf16's range (first {float(arr[first])!r} at index {list(first)}); fix or re-export "
            "the weights"
        )


# ----------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    text = read_text(path, "JSON file", ModelError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix or re-export the file"
        ) from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object (a Hugging Face model config)")
    return data


def _weights_files(path: Path) -> list[Path]:
    """The safetensors file(s) of a checkpoint directory, or ModelError."""
    single = path / WEIGHTS_FILE
    if single.is_file():
        return [single]
    index = path / INDEX_FILE
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError(f"{index}: no 'weight_map'; re-export the sharded checkpoint")
        shards = [path / s for s in sorted(set(map(str, weight_map.values())))]
        for shard in shards:
            if not shard.is_file():
                raise ModelError(f"{index} lists {shard.name}, which is missing; copy it there")
        return shards
    hint = ""
    if (path / "pytorch_model.bin").exists():
        hint = " (pytorch_model.bin is a pickle and is never loaded)"
    raise ModelError(
        f"{single} not found{hint}; save the model with safetensors "
        "(save_pretrained(..., safe_serialization=True))"
    )


def config_from_dir(path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of a Hugging Face GPT-2 or Llama checkpoint directory.

    Reads ``config.json`` (keys listed in :mod:`pimgpt.sw.hf_layout`) and checks that the weights
    file exists. The model is named after the directory; ``checkpoint`` is the resolved directory.

    Parameters
    ----------
    path : str or Path
        Checkpoint directory.

    Raises
    ------
    ModelError
        For a missing directory or file, malformed JSON, missing keys or an unsupported model.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"checkpoint directory {path} not found; pass an existing directory")
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelError(
            f"{cfg_path} not found; a checkpoint directory needs the Hugging Face config.json "
            "next to model.safetensors"
        )
    raw = _read_json(cfg_path)
    cfg = config_from_hf(raw, str(cfg_path), path.resolve().name, str(path.resolve()))
    _weights_files(path)
    return cfg


def config_from_yaml(path: str | Path) -> ModelConfig:
    """A :class:`ModelConfig` from a model YAML file.

    The keys are the fields of :class:`ModelConfig` (``name`` defaults to the file's stem,
    ``d_ff`` to ``4 * d_model``). An optional ``checkpoint:`` names a checkpoint directory
    (relative paths are taken from the YAML file's folder); the shape keys may then be left out and
    are read from its ``config.json``, and any that are given must agree with it.

    Raises
    ------
    ModelError
        For unreadable or malformed YAML, unknown keys, bad values or a disagreeing checkpoint.
    """
    import yaml  # local: only model YAML files need it

    from pimgpt.core.config import check_known_keys

    path = Path(path)
    text = read_text(path, "model file", ModelError)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ModelError(f"{path} is not valid YAML{where}; fix its syntax") from exc
    if not isinstance(raw, dict):
        raise ModelError(f"{path} must be a mapping of ModelConfig fields (n_layer: 2, ...)")
    check_known_keys(raw, [f.name for f in fields(ModelConfig)], str(path), "the top level",
                     ModelError)
    values = dict(raw)
    values.setdefault("name", path.stem)
    values["name"] = str(values["name"])
    for key in ("ln_eps", "rope_theta"):
        values[key] = _yaml_number(values, key, path)
    if isinstance(values.get("rope_scaling"), dict):
        scaling = dict(values["rope_scaling"])
        for key in ("factor", "low_freq_factor", "high_freq_factor"):
            scaling[key] = _yaml_number(scaling, key, path)
        values["rope_scaling"] = scaling
    values = {k: v for k, v in values.items() if v is not _ABSENT}
    ckpt = values.get("checkpoint")
    if ckpt is not None:
        ckpt_path = Path(str(ckpt))
        if not ckpt_path.is_absolute():
            ckpt_path = path.parent / ckpt_path
        try:
            base = config_from_dir(ckpt_path)
        except ModelError as exc:  # name the file that points there
            raise ModelError(f"{path}: checkpoint: {exc}") from None
        given = {k: v for k, v in values.items() if k not in ("name", "checkpoint")}
        try:
            mine = ModelConfig(**{**base.to_dict(), **given})
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        for key in given:
            if getattr(mine, key) != getattr(base, key):
                raise ModelError(
                    f"{path}: {key}={raw[key]!r} disagrees with {ckpt_path / CONFIG_FILE} "
                    f"({getattr(base, key)!r}); remove the key or fix it"
                )
        return ModelConfig(**{**base.to_dict(), "name": values["name"]})
    required = [k for k in ("n_layer", "d_model", "n_head", "ctx") if k not in values]
    if required:
        raise ModelError(
            f"{path}: missing key {required[0]}; a model file needs n_layer, d_model, n_head, ctx "
            "(and usually vocab), or a checkpoint: directory"
        )
    try:
        return ModelConfig(**values)
    except TypeError as exc:  # a non-numeric value reaching a comparison
        raise ModelError(f"{path}: invalid value ({exc}); use numbers for the shape keys") from exc


_ABSENT = object()


def _yaml_number(values: dict, key: str, path: Path):
    """``values[key]``, with a string such as ``1e-5`` read as the number it means (YAML 1.1 reads
    exponents without a dot as strings); ``_ABSENT`` when the key is not there."""
    value = values.get(key, _ABSENT)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ModelError(f"{path}: {key} must be a number, got {value!r}") from None
    return value


# ----------------------------------------------------------------------------------------------
# Loading and saving weights
# ----------------------------------------------------------------------------------------------


def _read_header(path: Path) -> tuple[int, dict]:
    """Header length and header of a safetensors file (already validated by ``safe_open``)."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return n, json.loads(fh.read(n))


def _read_bf16(path: Path, name: str, header: tuple[int, dict]) -> np.ndarray:
    """Read one BF16 tensor as float32 (numpy has no bfloat16, so safetensors.numpy refuses it)."""
    n, entries = header
    info = entries[name]
    begin, end = info["data_offsets"]
    count = (end - begin) // 2
    raw = np.fromfile(path, dtype="<u2", count=count, offset=8 + n + begin)
    # bf16 is the upper half of a float32: widening is exact.
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])


def _read_safetensors(files: list[Path]) -> dict[str, np.ndarray]:
    """All tensors of ``files`` as float32 in their file names, without the buffers."""
    from safetensors import SafetensorError, safe_open

    out: dict[str, np.ndarray] = {}
    for file in files:
        header = None
        try:
            with safe_open(str(file), framework="numpy") as fh:
                for key in fh.keys():
                    if key.endswith(BUFFER_SUFFIXES):
                        continue
                    dtype = fh.get_slice(key).get_dtype()
                    if dtype not in _FLOAT_DTYPES:
                        raise ModelError(
                            f"{file}: tensor {key} has dtype {dtype}; only F16, BF16, F32 and F64 "
                            "weights are supported (dequantise the checkpoint first)"
                        )
                    if key in out:
                        raise ModelError(f"{file}: tensor {key} is in two shards; keep one")
                    if dtype == "BF16":
                        header = header or _read_header(file)
                        out[key] = _read_bf16(file, key, header)
                    else:
                        out[key] = np.asarray(fh.get_tensor(key), dtype=np.float32)
        except SafetensorError as exc:
            raise ModelError(
                f"{file} is not a valid safetensors file ({str(exc).splitlines()[0]}); "
                "re-export the checkpoint"
            ) from exc
        except OSError as exc:
            raise ModelError(f"cannot read {file}: {exc}; check the file") from exc
    return out


def load_weights(cfg: ModelConfig) -> dict[str, np.ndarray]:
    """The float32 weights of ``cfg`` read from its checkpoint directory.

    Parameters
    ----------
    cfg : ModelConfig
        A model with ``checkpoint`` set (from :func:`config_from_dir`, a YAML file or a shipped
        model).

    Returns
    -------
    dict of str to numpy.ndarray
        Float32 arrays in pimgpt names (see :mod:`pimgpt.sw.models`), validated against ``cfg``.

    Raises
    ------
    ModelError
        If there is no checkpoint, a file is missing or invalid, or a tensor is missing or has the
        wrong shape.
    """
    if not cfg.checkpoint:
        raise ModelError(
            f"model {cfg.name} has no checkpoint; use random_weights() or weights_for()"
        )
    path = Path(cfg.checkpoint)
    if not path.is_dir():
        raise ModelError(f"checkpoint directory {path} not found; pass an existing directory")
    files = _weights_files(path)
    source = str(files[0] if len(files) == 1 else path / INDEX_FILE)
    weights = to_pimgpt(_read_safetensors(files), cfg, source)
    check_weights(cfg, weights, source=source)
    check_finite(weights, source=source)
    order = weight_shapes(cfg)
    return {name: np.ascontiguousarray(weights[name], dtype=np.float32) for name in order}


def random_weights(cfg: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random float32 weights with GPT-2's initialisation scales.

    Matrices and embeddings are N(0, 0.02); the residual projections (``attn.c_proj``,
    ``mlp.c_proj``) are scaled by ``1 / sqrt(2 * n_layer)`` as in GPT-2; LayerNorm weights are 1 and
    biases 0; linear biases are N(0, 0.002) rather than 0 so that the bias path is exercised.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.
    seed : int
        Seed of the numpy generator; the same seed and shape give the same weights.

    Returns
    -------
    dict of str to numpy.ndarray
        Float32 arrays in pimgpt names.
    """
    check_seed(seed)
    rng = np.random.default_rng(seed)
    std = 0.02
    proj_std = std / math.sqrt(2 * cfg.n_layer)
    out: dict[str, np.ndarray] = {}
    for name, shape in expected_shapes(cfg).items():
        if ".ln_" in name or name.startswith("ln_f"):
            fill = 1.0 if name.endswith(".weight") else 0.0
            out[name] = np.full(shape, fill, dtype=np.float32)
            continue
        scale = std
        if name.endswith(".bias"):
            scale = 0.1 * std
        elif name.endswith("c_proj.weight"):
            scale = proj_std
        arr = rng.standard_normal(shape, dtype=np.float32)
        arr *= np.float32(scale)
        out[name] = arr
    return out


#: Largest seed of random weights (seeds are unsigned 32-bit integers).
MAX_SEED = 2**32 - 1


def check_seed(seed) -> int:
    """Check a seed of random weights: an integer in ``0..MAX_SEED``.

    Raises
    ------
    ModelError
        For anything else.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
            0 <= seed <= MAX_SEED):
        raise ModelError(f"seed {seed!r} is out of range; give an integer in 0..{MAX_SEED}")
    return int(seed)


def weights_for(cfg: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Checkpoint weights if ``cfg.checkpoint`` is set, else :func:`random_weights` (``seed``)."""
    return load_weights(cfg) if cfg.checkpoint else random_weights(cfg, seed)


def save_checkpoint(cfg: ModelConfig, weights: dict, directory: str | Path,
                    dtype: str = "float32") -> Path:
    """Write ``config.json`` and ``model.safetensors`` in Hugging Face GPT-2 or Llama layout.

    Tensor names are those ``GPT2LMHeadModel``/``LlamaForCausalLM.save_pretrained`` write
    (``transformer.h.0.attn.c_attn.weight`` ... or ``model.layers.0.self_attn.q_proj.weight`` ...;
    a tied ``lm_head.weight`` is left out), with the safetensors metadata ``{"format": "pt"}``.
    The files are written under temporary names and renamed, so a failure leaves no partial
    checkpoint.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape (written as ``config.json``).
    weights : dict of str to numpy.ndarray
        Weights in pimgpt names; checked against ``cfg``.
    directory : str or Path
        Output directory, created if needed.
    dtype : {"float32", "float16"}
        Storage type of the tensors.

    Returns
    -------
    Path
        The directory.

    Raises
    ------
    ModelError
        For weights that do not match ``cfg``, an architecture with no Hugging Face layout or an
        unsupported ``dtype``.
    """
    from safetensors.numpy import save_file

    if dtype not in ("float32", "float16"):
        raise ModelError(
            f"save_checkpoint: dtype {dtype!r} is not supported; use float32 or float16"
        )
    check_weights(cfg, weights)
    layout(cfg)  # raises for an architecture with no Hugging Face layout
    directory = check_directory("checkpoint folder", directory)
    tensors = {name: np.ascontiguousarray(arr, dtype=dtype)
               for name, arr in to_hf(weights, cfg).items()}
    outs = Outputs({WEIGHTS_FILE: directory / WEIGHTS_FILE, CONFIG_FILE: directory / CONFIG_FILE},
                   label=f"checkpoint folder {directory}")
    with outs:
        outs.write(WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp),
                                                       metadata={"format": "pt"}))
        outs.write_json(CONFIG_FILE, hf_config(cfg), indent=2, sort_keys=True)
        outs.commit()
    return directory


# ----------------------------------------------------------------------------------------------
# Models shipped in the package (pimgpt/models/<name>/)
# ----------------------------------------------------------------------------------------------


def _shipped_root():
    return resources.files("pimgpt").joinpath("models")


def shipped_model_dir(name: str) -> Path | None:
    """The directory of the model ``name`` shipped under ``pimgpt/models/``, or None."""
    if not _SHIPPED_NAME.match(str(name)):
        return None
    entry = _shipped_root().joinpath(str(name))
    if not entry.is_dir() or not entry.joinpath(CONFIG_FILE).is_file():
        return None
    return Path(str(entry))


def shipped_model_names() -> list[str]:
    """Sorted names of the trained models shipped under ``pimgpt/models/``."""
    root = _shipped_root()
    if not root.is_dir():
        return []
    return sorted(
        e.name for e in root.iterdir()
        if e.is_dir() and _SHIPPED_NAME.match(e.name) and e.joinpath(CONFIG_FILE).is_file()
    )
