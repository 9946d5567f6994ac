"""Evaluating a model state: the engine (transformers or vLLM), the lm-eval call, throughput."""
