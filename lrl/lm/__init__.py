"""Language-model pieces for RLHF (docs/lm-rlhf.md): the synthetic task with a hidden true preference, tokenizer and
model building/loading. Nothing heavy is imported here: ``transformers`` is imported inside the functions."""
