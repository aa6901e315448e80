"""Alignment: collator, label masks, the Trainer + DeepSpeed entry point."""
