"""MMLU's subject groups as benchmarks: ``stem`` (MMLU's STEM group) and ``mmlu_law`` (its law subjects)."""
