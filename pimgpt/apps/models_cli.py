"""``pimgpt models``: list model and hardware presets."""

from __future__ import annotations


def cli_models(args) -> int:
    from pimgpt.core.config import hw_presets
    from pimgpt.sw.models import get_model, list_models

    print(
        f"{'model':<16}{'layers':>7}{'d_model':>8}{'heads':>6}{'ctx':>6}{'vocab':>7}{'params':>10}"
    )
    for name in list_models():
        m = get_model(name)
        print(
            f"{name:<16}{m.n_layer:>7}{m.d_model:>8}{m.n_head:>6}{m.ctx:>6}{m.vocab:>7}"
            f"{m.n_params / 1e6:>9.1f}M"
        )
    print("\nhardware presets: " + ", ".join(hw_presets()))
    return 0
