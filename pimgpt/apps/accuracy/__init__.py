"""``pimgpt accuracy``: how far the PIM numerics are from a float64 GPT-2 on the same weights.

Every figure compares the PIM arithmetic of ``docs/dataflow.md`` with a float64 forward of the same
float32 weights (:mod:`pimgpt.sim.reference`: ``PimModel`` and ``F64Model``). The PIM side runs on
the reference model, which ``tests/test_end_to_end.py`` shows bit-identical to the compiled program
on the golden simulator; this module also re-checks that on a few tokens with
:func:`pimgpt.sim.golden.run_golden`.

Sections of the report (``run_accuracy`` returns them as a dict, ``format_markdown`` as Markdown):

* ``random``: greedy decoding with the PIM numerics after a short prompt, and the float64 logits on
  the same token sequence (teacher forced), for random-weight models (``tiny``, ``gpt2-small``) and
  a random checkpoint written in Hugging Face layout and loaded back (``test-ckpt``).
* ``trained``: the shipped byte-level models on the held-out part of the training corpus
  (:mod:`pimgpt.sw.corpus`, the split ``tools/train_bytegpt.py`` trains on): perplexity in
  float64 and PIM numerics over
  context-length windows, next-byte agreement under teacher forcing, and greedy continuations of
  held-out prompts compared step by step with float64 on the same prefix.
* ``golden``: a few generated tokens on the golden simulator, compared bit for bit.
* ``ablation``: float64 forwards that round only one group of values to bf16 (weights, activations
  written to the global buffer, K/V caches: the rounding hooks of ``F64Model``), to see which
  rounding contributes most.

Modules: :mod:`.metrics` (the measures), :mod:`.experiments` (what is run and compared),
:mod:`.report` (the Markdown), :mod:`.run` (inputs, the whole run, the command).
"""

from .experiments import ABLATIONS, ALL_MODELS, FULL, QUICK, QUICK_DEFAULT, TRAINED_MODELS
from .metrics import AccuracyError, logit_error_stats, loss_stats, nll_nats
from .report import format_markdown
from .run import cli_accuracy, parse_models, run_accuracy

__all__ = ["ABLATIONS", "ALL_MODELS", "FULL", "QUICK", "QUICK_DEFAULT", "TRAINED_MODELS",
           "AccuracyError", "logit_error_stats", "loss_stats", "nll_nats", "format_markdown",
           "cli_accuracy", "parse_models", "run_accuracy"]
