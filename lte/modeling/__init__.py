"""Model and tokenizer loading; the tiny-model factory."""
