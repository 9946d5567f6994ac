"""How big a study is and how long it will take: counted from its plan and suite, timed on a sample.

``study_size`` counts what a study asks for: operation steps by operation, evaluations, requests
per benchmark, prompt tokens and the most tokens generation may produce. ``measure`` times the
base model on a short sample of the real workload through lm-eval's own model objects (the same
path the evaluation takes): generated tokens per second at the batch size the evaluation would
use, log-likelihood requests per second, one fine-tuning step, and a checkpoint's save-and-load.
``estimate`` puts the two together. ``python -m orderstudy estimate PARAMS`` prints it.

The estimate prices every model state like the base: pruned models run faster and quantized ones
(bitsandbytes dequantizes on the fly) usually slower, and a LoRA step costs less than the full
backward pass measured here; calibration passes (wanda, depth) are not counted. It is a planning
figure, said to be one.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from . import backends, engine as evaluation
from ..checkpoints import models
from ..core.operation import operations
from ..core.prompts import as_prompt
from ..core.plan import last_operation

MMLU_CHOICES = evaluation.MMLU_CHOICES


def study_size(study) -> dict:
    """Return what the study asks for: steps, evaluations, requests and tokens (no model is run)."""
    suite = study.suite
    params = suite.params
    tokenizer = models.load_tokenizer(base_model_dir(study))
    # With several seeds each seed has its own states where a stochastic step decided them; a state
    # every seed shares is built and evaluated once (as is, in a study of families, a state every family shares).
    seeded = study.variants()
    made = {s.store.key(name): name for s in seeded for name in s.plan.steps}
    steps = Counter(last_operation(name) for name in made.values())
    generation, loglik = workload(suite)
    gen_prompt_tokens = sum(evaluation.prompt_tokens(tokenizer, p, suite.chat_template) for p in generation)
    loglik_prompt_tokens = sum(evaluation.prompt_tokens(tokenizer, p, False) for p in loglik)
    evaluations = len({s.store.key(o) for s in seeded for o in s.plan.orderings})
    max_new_tokens = sum(generation_budgets(suite))
    return {
        "orderings": len(study.plan.orderings),
        "seeds": len(seeded),
        "evaluations": evaluations,
        "steps": {**{spec.letter: steps.get(spec.letter, 0) for spec in operations()},
                  "total": len(made), "without_sharing": study.plan.naive_step_count * len(seeded)},
        "items": {bench: sum(len(ids) for ids in tasks.values()) for bench, tasks in suite.sample_ids.items()},
        "per_model": {"generation_requests": len(generation), "generation_prompt_tokens": gen_prompt_tokens,
                      "max_new_tokens": max_new_tokens,
                      "loglikelihood_requests": len(loglik) * MMLU_CHOICES,
                      "loglikelihood_prompt_tokens": loglik_prompt_tokens * MMLU_CHOICES},
        "study": {"generation_requests": len(generation) * evaluations,
                  "max_new_tokens": max_new_tokens * evaluations,
                  "prompt_tokens": (gen_prompt_tokens + loglik_prompt_tokens * MMLU_CHOICES) * evaluations},
    }


def base_model_dir(study) -> Path:
    """Return the base state's checkpoint directory, preparing the base state if needed (the study's first step)."""
    base = study.store.state("base")
    if study.store.is_complete(base, verify_hashes=False):
        return base.model_dir
    return study.get_state("base", show=lambda *a: None)[0].model_dir


def workload(suite) -> tuple[list, list]:
    """Return the suite's generation prompts and log-likelihood contexts, task by task."""
    loglik_tasks = {t for b in suite.benchmarks if suite.request_type(b) == "loglikelihood" for t in suite.lm_eval_tasks(b)}
    generation, loglik = [], []
    for bench in suite.benchmarks:
        for name in suite.lm_eval_tasks(bench):
            (loglik if name in loglik_tasks else generation).extend(evaluation.task_prompts(suite, name))
    return generation, loglik


def generation_budgets(suite) -> list[int]:
    """Return the new-token budget of every generation prompt of the suite (its task's, ``budgets``)."""
    return [suite.max_new_tokens(name) for bench in suite.benchmarks for name in suite.lm_eval_tasks(bench)
            for _ in evaluation.task_prompts(suite, name) if suite.max_new_tokens(name)]


def typical_budget(suite) -> int:
    """Return the mean budget of the suite's generation prompts: the length a timed sample generates to."""
    found = generation_budgets(suite)
    return -(-sum(found) // len(found)) if found else 1


def sample(prompts: list[str], n: int, seed: int) -> list[str]:
    """Return ``n`` prompts drawn without replacement (all of them when there are fewer)."""
    if n >= len(prompts):
        return list(prompts)
    return random.Random(seed).sample(prompts, n)


def generate(lm, prompts: list[str], max_new_tokens: int, chat: bool) -> list[str]:
    """Return lm-eval's greedy answers to ``prompts`` (the evaluation's own request path)."""
    from lm_eval.api.instance import Instance

    requests = []
    for i, prompt in enumerate(prompts):
        prompt = as_prompt(prompt)
        context = lm.apply_chat_template(prompt.messages()) if chat else prompt.text()
        requests.append(Instance(request_type="generate_until", doc={}, idx=i,
                                 arguments=(context, {"until": [], "do_sample": False, "max_gen_toks": max_new_tokens})))
    return lm.generate_until(requests, disable_tqdm=True)


def measure_generation(lm, tokenizer, prompts: list[str], max_new_tokens: int, chat: bool) -> dict:
    """Return the answers, token counts, seconds and new tokens per second of one generation run."""
    started = time.perf_counter()
    answers = generate(lm, prompts, max_new_tokens, chat)
    seconds = time.perf_counter() - started
    new_tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return {"answers": answers, "prompts": len(prompts),
            "prompt_tokens": sum(evaluation.prompt_tokens(tokenizer, p, chat) for p in prompts),
            "new_tokens": new_tokens, "seconds": round(seconds, 3),
            "new_tokens_per_s": round(new_tokens / seconds, 2) if seconds else None}


def measure_loglikelihood(lm, contexts: list[str]) -> dict:
    """Return seconds and requests per second for scoring the four answer letters of ``contexts``."""
    from lm_eval.api.instance import Instance

    requests = [Instance(request_type="loglikelihood", doc={}, idx=i * MMLU_CHOICES + k,
                         arguments=(as_prompt(context).text(), f" {letter}"))
                for i, context in enumerate(contexts) for k, letter in enumerate("ABCD")]
    started = time.perf_counter()
    lm.loglikelihood(requests, disable_tqdm=True)
    seconds = time.perf_counter() - started
    return {"requests": len(requests), "seconds": round(seconds, 3),
            "requests_per_s": round(len(requests) / seconds, 2) if seconds else None}


def measure_train_step(model, batch_size: int, seq_len: int, device: str) -> float:
    """Return the seconds of one forward and backward pass on a full training batch (an upper bound for LoRA)."""
    import torch

    vocab = model.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=torch.Generator().manual_seed(0)).to(device)
    model.train()
    started = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    model.eval()
    return seconds


def measure_checkpoint_io(model, tokenizer, dtype: str, device: str) -> float:
    """Return the seconds to save the model as a checkpoint and load it again (what P and Q do at least)."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        models.save_model(model, tokenizer, Path(tmp) / "model")
        reloaded = models.load_model(Path(tmp) / "model", dtype, device)
        seconds = time.perf_counter() - started
        del reloaded
    return seconds


def measure(study, items: int = 16) -> dict:
    """Return throughput figures of the study's base model on a sample of its own workload.

    Each request type runs on the engine the study's evaluation gives it (``study.engine``).
    """
    suite = study.suite
    params = suite.params
    engine = study.engine
    model_dir = base_model_dir(study)
    tokenizer = models.load_tokenizer(model_dir)
    # The transformers model: timed for training and checkpoint I/O always; loaded once.
    model = models.load_model(model_dir, study.dtype, study.device)
    config = models.read_config(model_dir)
    generation, loglik = workload(suite)
    out: dict = {"backend": engine.name, "backend_reason": engine.reason, "device": study.device, "dtype": study.dtype}
    engines = backends.VllmEngines(study.dtype, study.device, params)
    try:
        if generation:
            prompts = sample(generation, items, study.params.sample_seed)
            batch = batch_size_for(params, config, study, tokenizer, prompts, suite.chat_template, loglikelihood=False)
            lm, batch = engine_lm(engine.for_request("generation"), engines, model_dir, model, tokenizer, study, batch)
            run = measure_generation(lm, tokenizer, prompts, typical_budget(suite), suite.chat_template)
            run.pop("answers")
            out["generation"] = dict(run, batch_size=batch, engine=engine.for_request("generation"),
                                     mean_new_tokens=round(run["new_tokens"] / run["prompts"], 2))
        if loglik:
            contexts = sample(loglik, items, study.params.sample_seed)
            batch = batch_size_for(params, config, study, tokenizer, contexts, False, loglikelihood=True)
            lm, batch = engine_lm(engine.for_request("loglikelihood"), engines, model_dir, model, tokenizer, study, batch)
            out["loglikelihood"] = dict(measure_loglikelihood(lm, contexts), batch_size=batch,
                                        engine=engine.for_request("loglikelihood"))
    finally:
        engines.close()
    if study.trains:
        ft = study.params.finetune
        out["train_step_s"] = round(measure_train_step(model, ft.batch_size, ft.max_seq_len, study.device), 3)
    out["checkpoint_io_s"] = round(measure_checkpoint_io(model, tokenizer, study.dtype, study.device), 3)
    return out


def engine_lm(which: str, engines, model_dir, model, tokenizer, study, batch: int):
    """Return ``(lm-eval model object, batch size)`` for engine ``which`` on the checkpoint in ``model_dir``."""
    if which == "vllm":
        return engines.lm_for(model_dir), "vllm scheduler"
    return backends.make_hf_lm(model=model, tokenizer=tokenizer, device=study.device, batch_size=batch,
                               params=study.suite.params), batch


def batch_size_for(params, config, study, tokenizer, prompts, chat, loglikelihood) -> int:
    if params.batch_size != "auto":
        return params.batch_size
    longest = max(evaluation.prompt_tokens(tokenizer, p, chat) for p in prompts)
    return backends.choose_batch_size(config, study.dtype, study.device, backends.free_memory_bytes(study.device),
                                      longest, max(generation_budgets(study.suite), default=1), loglikelihood)


def estimate(study, items: int = 16) -> dict:
    """Return the study's size, the measured figures and the estimated seconds, part by part."""
    size = study_size(study)
    figures = measure(study, items)
    per_model = size["per_model"]
    generation_s = 0.0
    if "generation" in figures:
        g = figures["generation"]
        expected_new = g["mean_new_tokens"] * per_model["generation_requests"]
        generation_s = expected_new / g["new_tokens_per_s"] if g["new_tokens_per_s"] else 0.0
        size["per_model"]["expected_new_tokens"] = round(expected_new)
    loglik_s = 0.0
    if "loglikelihood" in figures and figures["loglikelihood"]["requests_per_s"]:
        loglik_s = per_model["loglikelihood_requests"] / figures["loglikelihood"]["requests_per_s"]
    evaluations_s = (generation_s + loglik_s) * size["evaluations"]
    training_steps = sum(size["steps"][spec.letter] for spec in operations() if spec.needs_training_data)
    finetune_s = training_steps * study.params.finetune.max_steps * figures.get("train_step_s", 0.0) \
        if study.params.finetune.epochs is None else None
    io_s = (sum(size["steps"][spec.letter] for spec in operations()) + 1) * figures["checkpoint_io_s"]
    seconds = {"evaluation_per_model": round(generation_s + loglik_s, 1), "evaluations": round(evaluations_s, 1),
               "fine_tuning": round(finetune_s, 1) if finetune_s is not None else None,
               "checkpoints": round(io_s, 1)}
    seconds["total"] = round(sum(v for v in (evaluations_s, finetune_s or 0.0, io_s)), 1)
    return {"size": size, "measured": figures, "estimated_seconds": seconds}


def format_estimate(study, result: dict) -> str:
    """Return the estimate as the table ``python -m orderstudy estimate`` prints."""
    size, m, s = result["size"], result["measured"], result["estimated_seconds"]
    pm = size["per_model"]
    lines = [
        f"study {study.params.study} ({study.params_file}) on {m['device']} ({m['dtype']}), backend {m['backend']}",
        "",
        "size",
        f"  orderings, seeds               {size['orderings']:>12,}   ({size['seeds']} seed(s))",
        f"  evaluations (distinct states)  {size['evaluations']:>12,}",
        f"  operation steps                {size['steps']['total']:>12,}   (F {size['steps']['F']}, P {size['steps']['P']}, "
        f"Q {size['steps']['Q']}; {size['steps']['without_sharing']} without sharing)",
    ]
    for bench, n in size["items"].items():
        lines.append(f"  items: {bench:<23s} {n:>12,}")
    lines += [
        f"  generation requests / model    {pm['generation_requests']:>12,}",
        f"  generated tokens / model, max  {pm['max_new_tokens']:>12,}"
        + (f"   (expected {pm['expected_new_tokens']:,} at the measured mean)" if "expected_new_tokens" in pm else ""),
        f"  log-likelihood requests / model{pm['loglikelihood_requests']:>12,}",
        f"  prompt tokens, whole study     {size['study']['prompt_tokens']:>12,}",
        f"  generated tokens, study, max   {size['study']['max_new_tokens']:>12,}",
        "",
        "measured on the base model",
    ]
    if "generation" in m:
        g = m["generation"]
        lines.append(f"  generation: {g['prompts']} prompts, batch {g['batch_size']}, {g['new_tokens']:,} new tokens in "
                     f"{g['seconds']:.1f} s = {g['new_tokens_per_s']:,.1f} new tokens/s")
    if "loglikelihood" in m:
        ll = m["loglikelihood"]
        lines.append(f"  log-likelihood: {ll['requests']} requests, batch {ll['batch_size']}, {ll['seconds']:.2f} s = "
                     f"{ll['requests_per_s']:,.1f} requests/s")
    if "train_step_s" in m:
        lines.append(f"  one training step (forward + backward, full batch): {m['train_step_s']:.2f} s")
    lines.append(f"  checkpoint save + load: {m['checkpoint_io_s']:.2f} s")
    lines += [
        "",
        "estimated time (every state priced like the base)",
        f"  evaluation, one model          {_hms(s['evaluation_per_model'])}",
        f"  evaluations, all               {_hms(s['evaluations'])}",
        f"  fine-tuning steps              {_hms(s['fine_tuning']) if s['fine_tuning'] is not None else 'n/a (epochs)'}",
        f"  checkpoints written and read   {_hms(s['checkpoints'])}",
        f"  total                          {_hms(s['total'])}",
    ]
    return "\n".join(lines)


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d} ({seconds:,} s)"


def compare_backends(study, items: int = 16) -> dict:
    """Return how far each engine's greedy answers agree with transformers at batch size 1.

    The reference is the plainest run: transformers, one prompt at a time (no padding). Checked
    against it: transformers at the evaluation's batch size (left padding and length-sorted batches
    must not change a greedy answer; in bf16 near-ties they do), and vLLM when a build for this
    device is installed. Each row gives the number of identical answers and the first answers
    that differ.
    """
    suite = study.suite
    params = suite.params
    model_dir = base_model_dir(study)
    tokenizer = models.load_tokenizer(model_dir)
    generation, _ = workload(suite)
    prompts = sample(generation, items, study.params.sample_seed)
    model = models.load_model(model_dir, study.dtype, study.device)
    config = models.read_config(model_dir)
    runs = {}
    engines = backends.VllmEngines(study.dtype, study.device, params)

    def run(label, which, batch):
        lm, _ = engine_lm(which, engines, model_dir, model, tokenizer, study, batch)
        runs[label] = measure_generation(lm, tokenizer, prompts, typical_budget(suite), suite.chat_template)

    run("hf, batch 1", "hf", 1)
    batch = batch_size_for(params, config, study, tokenizer, prompts, suite.chat_template, loglikelihood=False)
    run(f"hf, batch {batch}", "hf", batch)
    skipped = None
    if backends.vllm_device() == study.device:
        try:
            run("vllm", "vllm", batch)
        finally:
            engines.close()
    else:
        skipped = (f"no vLLM build for {study.device} is installed here (make env-vllm, then run with "
                   ".venv-vllm/bin/python)" if backends.vllm_device() is None
                   else f"the installed vLLM build runs on {backends.vllm_device()}, the study on {study.device}")
    # A generation cut at max_new_tokens can end inside a character: transformers decodes the
    # lone bytes as U+FFFD, vLLM leaves them out. Same tokens, so not a difference.
    reference = [a.rstrip("\ufffd") for a in runs["hf, batch 1"]["answers"]]
    rows = []
    for label, r in runs.items():
        differ = [i for i, (a, b) in enumerate(zip(reference, r["answers"])) if a != b.rstrip("\ufffd")]
        rows.append({"backend": label, "prompts": len(prompts), "identical": len(prompts) - len(differ),
                     "new_tokens_per_s": r["new_tokens_per_s"], "differing_prompts": differ,
                     "first_differences": [{"prompt": prompts[i][:80], "reference": reference[i][:120],
                                            "answer": r["answers"][i][:120]} for i in differ[:3]]})
    return {"rows": rows, "vllm_skipped": skipped, "engine": study.engine.describe()}


def format_comparison(result: dict) -> str:
    """Return the backend comparison as a table, with the first differing answers under it."""
    lines = [f"{'backend':16s} {'prompts':>8s} {'identical':>10s} {'new tok/s':>10s}"]
    for r in result["rows"]:
        lines.append(f"{r['backend']:16s} {r['prompts']:8d} {r['identical']:10d} {r['new_tokens_per_s'] or 0:10.1f}")
    for r in result["rows"]:
        for d in r["first_differences"]:
            lines.append(f"  {r['backend']}: differs on {d['prompt']!r}\n    reference {d['reference']!r}\n    answer    {d['answer']!r}")
    if result["vllm_skipped"]:
        lines.append(f"vllm not compared: {result['vllm_skipped']}")
    if result.get("engine"):
        lines.append(f"this study is evaluated with {result['engine']}")
    return "\n".join(lines)
