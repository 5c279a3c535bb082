"""GPT model descriptions: the published GPT-2/GPT-3 shapes, ``tiny`` for RTL, and model YAML files.

A model is a :class:`ModelConfig`; its weights are a ``dict[str, numpy.ndarray]`` of float32 arrays
named and laid out as in a Hugging Face GPT-2 checkpoint (Conv1D weights ``[in, out]``)::

    wte [vocab, d]        wpe [ctx, d]
    h.{i}.ln_1.weight [d] h.{i}.ln_1.bias [d]
    h.{i}.attn.c_attn.weight [d, 3d]  h.{i}.attn.c_attn.bias [3d]
    h.{i}.attn.c_proj.weight [d, d]   h.{i}.attn.c_proj.bias [d]
    h.{i}.ln_2.weight [d] h.{i}.ln_2.bias [d]
    h.{i}.mlp.c_fc.weight [d, 4d]     h.{i}.mlp.c_fc.bias [4d]
    h.{i}.mlp.c_proj.weight [4d, d]   h.{i}.mlp.c_proj.bias [d]
    ln_f.weight [d] ln_f.bias [d]

The LM head is tied to ``wte``. Loading checkpoints lives in :mod:`pimgpt.sw.checkpoint`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from pimgpt.core.errors import PimgptError


class ModelError(PimgptError):
    """An unknown model name or an invalid model description."""


#: Largest value of each shape field: far beyond any published model (Llama-3.1-405B has 126
#: layers, d_model 16384, 128 heads, a 128k context and 128256 tokens), small enough that every
#: per-layer loop and per-token table a model description drives stays bounded.
SHAPE_LIMITS = {"n_layer": 1024, "d_model": 2**16, "n_head": 1024, "ctx": 2**20,
                "vocab": 2**22, "d_ff": 2**18}


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a GPT-2-architecture decoder (pre-LayerNorm, GELU-tanh MLP, learned positions).

    Parameters
    ----------
    name : str
        Preset or checkpoint name.
    n_layer, d_model, n_head, ctx, vocab : int
        Layers, model width, attention heads, maximum context, vocabulary size.
    d_ff : int
        MLP hidden width (4 * d_model for GPT-2).
    ln_eps : float
        LayerNorm epsilon.
    checkpoint : str or None
        Directory of a Hugging Face checkpoint holding the weights, if any.
    """

    name: str
    n_layer: int
    d_model: int
    n_head: int
    ctx: int
    vocab: int = 50257
    d_ff: int = 0
    ln_eps: float = 1e-5
    checkpoint: str | None = None

    def __post_init__(self):
        if not self.d_ff:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        for key, most in SHAPE_LIMITS.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= most:
                raise ModelError(
                    f"model {self.name}: {key} must be an integer in 1..{most}, got {value!r}"
                )
        if self.d_model % self.n_head:
            raise ModelError(
                f"model {self.name}: d_model {self.d_model} is not divisible by "
                f"n_head {self.n_head}"
            )
        if self.d_head % 16:
            raise ModelError(
                f"model {self.name}: d_head {self.d_head} must be a multiple of 16 (one MAC column)"
            )
        if not 0 < self.ln_eps < 1:
            raise ModelError(f"model {self.name}: ln_eps must be in (0, 1), got {self.ln_eps!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def n_params(self) -> int:
        """Parameter count with the tied LM head counted once."""
        d, f = self.d_model, self.d_ff
        per_layer = 4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
        return self.vocab * d + self.ctx * d + self.n_layer * per_layer + 2 * d

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, ModelConfig] = {
    m.name: m
    for m in (
        ModelConfig("tiny", n_layer=2, d_model=64, n_head=4, ctx=64, vocab=256),
        ModelConfig("gpt2-small", n_layer=12, d_model=768, n_head=12, ctx=1024),
        ModelConfig("gpt2-medium", n_layer=24, d_model=1024, n_head=16, ctx=1024),
        ModelConfig("gpt2-large", n_layer=36, d_model=1280, n_head=20, ctx=1024),
        ModelConfig("gpt2-xl", n_layer=48, d_model=1600, n_head=25, ctx=1024),
        ModelConfig("gpt3-small", n_layer=12, d_model=768, n_head=12, ctx=2048),
        ModelConfig("gpt3-medium", n_layer=24, d_model=1024, n_head=16, ctx=2048),
        ModelConfig("gpt3-large", n_layer=24, d_model=1536, n_head=16, ctx=2048),
        ModelConfig("gpt3-xl", n_layer=24, d_model=2048, n_head=16, ctx=2048),
    )
}

#: The eight models of the PIM-GPT evaluation, in the paper's order.
PAPER_MODELS = [n for n in PRESETS if n != "tiny"]


def get_model(name_or_path: str | Path) -> ModelConfig:
    """A model by preset name, checkpoint directory (``config.json``) or model YAML file.

    Raises
    ------
    ModelError
        For an unknown name or an invalid description.
    """
    key = str(name_or_path)
    if key == "":
        raise ModelError("the model is an empty string; give a preset name, a checkpoint "
                         "directory or a model .yaml file")
    if key in PRESETS:
        return PRESETS[key]
    from pimgpt.sw import checkpoint  # local import: presets must not need safetensors

    shipped = checkpoint.shipped_model_dir(key)
    if shipped is not None:
        return checkpoint.config_from_dir(shipped)
    path = Path(key)
    if path.is_dir():
        return checkpoint.config_from_dir(path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return checkpoint.config_from_yaml(path)
    raise ModelError(
        f"unknown model '{key}'; use a preset ({', '.join(list_models())}), "
        "a Hugging Face checkpoint directory, or a model .yaml file"
    )


def list_models() -> list[str]:
    """Preset names plus the trained models shipped in the repository."""
    from pimgpt.sw import checkpoint

    return list(PRESETS) + checkpoint.shipped_model_names()
