"""A study: its state store, the run of one ordering, the fine-tune's probes, the result it writes."""
