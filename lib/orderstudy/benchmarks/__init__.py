"""The benchmarks: their data, prompts, generation budgets, scoring and aggregation."""
