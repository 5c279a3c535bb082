"""``pimgpt models``: list model and hardware presets."""

from __future__ import annotations


def cli_models(args) -> int:
    from pimgpt.core.config import hw_presets
    from pimgpt.sw.models import get_model, list_models

    print(
        f"{'model':<16}{'layers':>7}{'d_model':>8}{'heads':>6}{'ctx':>8}{'vocab':>8}{'params':>10}"
        f"{'kv':>4}  architecture"
    )
    for name in list_models():
        m = get_model(name)
        arch = f"{m.norm}, {m.position}, {m.mlp}" + ("" if m.tied_head else ", untied head")
        print(
            f"{name:<16}{m.n_layer:>7}{m.d_model:>8}{m.n_head:>6}{m.ctx:>8}{m.vocab:>8}"
            f"{m.n_params / 1e6:>9.1f}M{m.n_kv_head:>4}  {arch}"
        )
    print("\nhardware presets: " + ", ".join(hw_presets()))
    return 0
