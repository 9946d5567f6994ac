"""Model checkpoints: loading, saving, the sparse format, bitsandbytes' CPU numerics, provenance, inspection."""
