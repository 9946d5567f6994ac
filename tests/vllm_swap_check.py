"""Run in the vLLM environment by tests/test_vllm.py: does a weight swap give a fresh engine's answers?

    .venv-vllm/bin/python tests/vllm_swap_check.py BASE_MODEL_DIR WORK_DIR OUT.json

Makes a second checkpoint of the same shape (the base's weights moved by seeded noise), then asks
lm-eval's vLLM model object for greedy answers (with their top log-probabilities) and for
log-likelihoods, on long prompts (several KV-cache blocks, so a stale prefix cache would show):
from an engine started on the base whose weights were then swapped for the other checkpoint, and
from an engine started fresh on the other checkpoint. Writes both, and the base's, to OUT.json.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

PROMPTS = [("The court of appeals reviewed the contract dispute between the two parties. " * 6).strip(),
           ("甲公司与乙公司签订买卖合同，约定乙公司交付货物后甲公司付款。" * 6)]


def perturbed_copy(base: Path, out: Path) -> Path:
    """Return a checkpoint of ``base``'s shape with every weight moved by seeded noise."""
    import torch
    from transformers import AutoModelForCausalLM

    from orderstudy.checkpoints import storage

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator).to(p.dtype) * 0.05)
    shutil.rmtree(out, ignore_errors=True)
    storage.save(model, out, tokenizer_from=base)
    return out


def answers(lm) -> dict:
    """Return greedy token ids with their top-3 log-probabilities, and log-likelihoods, from ``lm``."""
    from lm_eval.api.instance import Instance
    from vllm import SamplingParams

    outs = lm.model.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=16, logprobs=3), use_tqdm=False)
    generated = [{"tokens": list(o.outputs[0].token_ids),
                  "logprobs": [{str(k): v.logprob for k, v in sorted(step.items())} for step in o.outputs[0].logprobs]}
                 for o in outs]
    requests = [Instance(request_type="loglikelihood", doc={}, idx=i, arguments=(p, " yes"))
                for i, p in enumerate(PROMPTS)]
    return {"generated": generated, "loglikelihood": [list(r) for r in lm.loglikelihood(requests, disable_tqdm=True)]}


def main(base: str, work: str, out: str) -> None:
    from orderstudy.evaluation import backends
    from orderstudy.core.params import EvaluationParams

    other = perturbed_copy(Path(base), Path(work) / "other")
    engines = backends.VllmEngines("bfloat16", "cpu", EvaluationParams())
    result = {"base": answers(engines.lm_for(base))}
    result["swapped"] = answers(engines.lm_for(other))
    result["swapped_stats"] = engines.stats()
    engines.close()
    fresh = backends.VllmEngines("bfloat16", "cpu", EvaluationParams())
    result["fresh"] = answers(fresh.lm_for(other))
    result["fresh_stats"] = fresh.stats()
    fresh.close()
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
