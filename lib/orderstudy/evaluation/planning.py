"""A study's size, and its time and GPU memory estimated from documented rates: nothing is measured.

``orderstudy estimate`` measures the base model on the study's own device when it can
(``throughput``). Where it cannot — a GPU params file on a machine without CUDA, or before the
model or the data are downloaded — ``plan_estimate`` counts the study from its params and plan
and prices it with the rates below. Every figure it prints says where it comes from.

The model's shape is read from its ``config.json`` when the checkpoint (or the Hugging Face
cache) has it, else taken from ``KNOWN_MODELS`` (each row copied from the model's published
``config.json``). The GPU is one of ``GPUS`` (peak figures from the vendor's datasheet); how much
of a peak a run reaches is ``EFFICIENCY``, an assumption stated as one.

Formulas, per model of N parameters in 16-bit:

- fine-tuning compute: 6·N FLOPs per trained token for forward and backward (Kaplan et al. 2020,
  "Scaling Laws for Neural Language Models", arXiv:2001.08361, section 2.1), 4·N with LoRA (the
  frozen weights need no weight gradient: the backward pass does one of its two matmuls);
- fine-tuning activations: s·b·h·(34 + 5·a·s/h) bytes per layer in 16-bit without recomputation
  (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
  arXiv:2205.05198, section 4.1), plus the logits in float32 (s·b·V·4 bytes);
- prompt processing (prefill, log-likelihood requests): 2·N FLOPs per token, compute-bound;
- generation (decode): each step reads the weights once, so a batch of B sequences makes
  B tokens per (2·N bytes / memory bandwidth), at most the compute bound 2·N FLOPs per token;
- the KV cache: 2 · layers · kv_heads · head_dim · 2 bytes per token of every sequence in a batch.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core import paths
from ..core.benchmark import get_benchmark
from ..core.operation import get_operation, operations
from ..core.params import StudyParams
from ..core.plan import last_operation, make_plan, parse_ordering
from ..core.prompts import as_prompt

# Shapes from the models' published config.json (hidden_size, num_hidden_layers,
# num_attention_heads, num_key_value_heads, intermediate_size, vocab_size, tie_word_embeddings).
KNOWN_MODELS = {
    "Qwen/Qwen2.5-1.5B-Instruct": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                                       num_key_value_heads=2, intermediate_size=8960, vocab_size=151936,
                                       tie_word_embeddings=True),
    "meta-llama/Llama-3.2-1B-Instruct": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                                             num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
                                             tie_word_embeddings=True),
    "HuggingFaceTB/SmolLM2-135M-Instruct": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                                                num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                                                tie_word_embeddings=True),
}
# Dense bf16 tensor-core peak (no sparsity), memory bandwidth and memory, from NVIDIA's datasheets.
GPUS = {
    "A100-80GB": {"bf16_flops": 312e12, "bandwidth_bytes_s": 2.039e12, "memory_bytes": 80e9},
    "H100-SXM-80GB": {"bf16_flops": 989e12, "bandwidth_bytes_s": 3.35e12, "memory_bytes": 80e9},
    "L4-24GB": {"bf16_flops": 121e12, "bandwidth_bytes_s": 300e9, "memory_bytes": 24e9},
}
DEFAULT_GPU = "A100-80GB"
# Assumed, not measured: the share of a peak a run reaches (a well-fed training run reaches 40-50%
# of the compute peak, PaLM's 46% MFU: Chowdhery et al. 2022, arXiv:2204.02311; decoding with
# batched requests about half the memory bandwidth), and the sequences decoded at once.
EFFICIENCY = {"compute": 0.4, "bandwidth": 0.5}
DECODE_BATCH = 64
# Without a tokenizer, tokens are estimated from characters: about 1.4 characters per token for
# Chinese text with Qwen2.5's and Llama 3's tokenizers, about 4 for English (a rule of thumb,
# OpenAI's tokenizer guide for English): LawBench is Chinese, MMLU English.
CHARS_PER_TOKEN = {"lawbench": 1.4, "default": 4.0}
SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_key_value_heads",
              "vocab_size", "tie_word_embeddings")
# LawBench's own zero-shot files (all 20 tasks): 500 items each, 3,914,570 characters of
# instruction + question over the 10,000 items, 391 per prompt: the figures used without its data.
LAWBENCH_ITEMS_PER_TASK = 500
LAWBENCH_PROMPT_CHARS = 391
MMLU_CHOICES = 4


class PlanningError(ValueError):
    """The study cannot be priced here: its model's shape is unknown; the message says what to do."""


def model_shape(params: StudyParams) -> tuple[dict, str]:
    """Return the base model's shape (config.json's keys above) and where it was read from."""
    source = params.model.source
    local = paths.resolve(source)
    candidates = [local / "config.json"] if local.is_dir() else []
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json", revision=params.model.revision)
        if isinstance(cached, str):
            candidates.append(Path(cached))
    except Exception:  # not a hub id, or no cache: the table below answers
        pass
    for path in candidates:
        if path.is_file():
            config = json.loads(path.read_text(encoding="utf-8"))
            config = config.get("text_config", config)
            shape = {k: config[k] for k in SHAPE_KEYS if k in config}
            missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
                       if k not in shape]
            if missing:
                raise PlanningError(f"{path}: keys {missing} missing; expected a decoder's config.json")
            shape.setdefault("num_key_value_heads", shape["num_attention_heads"])
            shape.setdefault("tie_word_embeddings", True)   # transformers' default
            return shape, str(path)
    if source in KNOWN_MODELS:
        return dict(KNOWN_MODELS[source]), f"the published config.json of {source} (table in orderstudy.evaluation.planning)"
    raise PlanningError(f"model.source {source!r}: no config.json here and not one of the documented models "
                     f"({', '.join(KNOWN_MODELS)}); download the model once or estimate on the machine that has it")


def parameter_count(shape: dict) -> int:
    """Return a decoder's parameter count from its shape (embeddings, attention, MLP; norms and biases are negligible)."""
    h, layers, inter, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"], shape["vocab_size"]
    head_dim = h // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"]
    attention = 2 * h * h + 2 * h * kv * head_dim
    per_layer = attention + 3 * h * inter
    return vocab * h * (1 if shape.get("tie_word_embeddings", True) else 2) + layers * per_layer


def local_tokenizer(params: StudyParams):
    """Return the base model's tokenizer if it is on this machine (a checkpoint directory or the hub cache), else None."""
    try:
        from transformers import AutoTokenizer

        local = paths.resolve(params.model.source)
        where = str(local) if local.is_dir() else params.model.source
        return AutoTokenizer.from_pretrained(where, revision=params.model.revision, local_files_only=True)
    except Exception:  # absent, gated, or a GGUF file: tokens are then estimated from characters
        return None


def plan_size(params: StudyParams) -> dict:
    """Return the steps by operation (each seed's own where a stochastic step decides the state) and the evaluations.

    In a study of families, a state with the operation they differ in is made once per family.
    """
    plan = make_plan(params.orderings)
    seeds = len(params.seeds)
    families = [params.for_family(f) for f in params.families] or [params]

    def copies(state: str) -> int:
        ops = parse_ordering(state)
        each = [seeds if any(get_operation(op).stochastic(p.operation_params(op)) for op in ops) else 1 for p in families]
        return sum(each) if params.family_operation in ops else max(each)

    steps = {spec.letter: 0 for spec in operations()}
    for state in plan.steps:
        steps[last_operation(state)] += copies(state)
    return {"orderings": len(plan.orderings), "seeds": seeds, "steps": steps, "steps_total": sum(steps.values()),
            "evaluations": sum(copies(o) for o in plan.orderings)}


def benchmark_items(params: StudyParams, tokenizer=None) -> dict[str, dict]:
    """Return, per benchmark: items, prompt tokens (counted, or estimated from characters), and how they were found."""
    out = {}
    ev = params.evaluation
    for name in ev.benchmarks:
        bench = get_benchmark(name)
        request = bench.request_type(ev)
        if request == "agreement":   # compares the answers of other benchmarks: no request of its own
            out[name] = {"items": 0, "tasks": 0, "prompt_tokens": 0, "request": request,
                         "counted": f"no model call: compares the answers of {', '.join(bench.compares(ev))} with the base's"}
            continue
        if request == "divergence":   # one forward over each held-out text, at most kl_tokens long
            out[name] = {"items": ev.kl_texts, "tasks": len(bench.tasks(ev)), "prompt_tokens": ev.kl_texts * ev.kl_tokens,
                         "request": request, "counted": f"{ev.kl_texts} held-out texts of at most {ev.kl_tokens} tokens"}
            continue
        try:
            sample = bench.sample(ev, params.sample_seed)
        except (OSError, ValueError) as exc:  # the data is not here: LawBench's documented size, else unknown
            where = bench.data_dir(ev) if hasattr(bench, "data_dir") else " ".join(str(exc).split())
            tasks = bench.tasks(ev)
            per_task = LAWBENCH_ITEMS_PER_TASK if name == "lawbench" else None
            cap = getattr(ev, "lawbench_items_per_task", None) if name == "lawbench" else None
            items = len(tasks) * min(per_task, cap or per_task) if per_task else None
            out[name] = {"items": items, "tasks": len(tasks), "prompt_tokens": None, "request": request,
                         "counted": f"no data at {where}; "
                                    + (f"{per_task} items per task as LawBench publishes" if per_task else "items unknown")}
            continue
        rendered = [as_prompt(bench.prompt(task, item)).text() for task, rows in sample.items() for item in rows]
        if tokenizer is not None:
            tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in rendered)
            how = "tokens counted with the model's tokenizer"
        else:
            ratio = CHARS_PER_TOKEN.get(name, CHARS_PER_TOKEN["default"])
            tokens = round(sum(len(text) for text in rendered) / ratio)
            how = f"tokens estimated from characters ({ratio} characters per token), no tokenizer here"
        out[name] = {"items": len(rendered), "tasks": len(sample), "prompt_tokens": tokens, "request": request, "counted": how}
    return out


def plan_estimate(params: StudyParams, gpu: str = DEFAULT_GPU, tokenizer=None) -> dict:
    """Return the study's size and its time and GPU memory from documented rates (see the module's docstring)."""
    if gpu not in GPUS:
        raise PlanningError(f"GPU {gpu!r}: expected one of {', '.join(GPUS)}")
    rates = GPUS[gpu]
    shape, shape_source = model_shape(params)
    n = parameter_count(shape)
    size = plan_size(params)
    items = benchmark_items(params, tokenizer)
    ev = params.evaluation
    compute = rates["bf16_flops"] * EFFICIENCY["compute"]
    decode_tokens_s = min(DECODE_BATCH * rates["bandwidth_bytes_s"] * EFFICIENCY["bandwidth"] / (2 * n), compute / (2 * n))
    new_tokens, prompt_tokens, longest_prompt = 0, 0, 0
    for name, b in items.items():
        tokens = b["prompt_tokens"]
        if tokens is None and b["items"] and name == "lawbench":
            ratio = CHARS_PER_TOKEN["lawbench"]
            tokens = round(b["items"] * LAWBENCH_PROMPT_CHARS / ratio)
            b["counted"] += (f"; prompt tokens estimated from LawBench's mean prompt of {LAWBENCH_PROMPT_CHARS} "
                             f"characters at {ratio} characters per token")
        tokens = tokens or 0
        if b["request"] == "loglikelihood":
            prompt_tokens += tokens * MMLU_CHOICES
        elif b["request"] in ("divergence", "agreement"):
            prompt_tokens += tokens   # one forward per text (kl), or none (flip)
        else:
            prompt_tokens += tokens
            new_tokens += (b["items"] or 0) * ev.max_new_tokens   # an upper bound: generation stops at the answer's end
        if b["items"]:
            longest_prompt = max(longest_prompt, tokens // b["items"])
    per_model_s = prompt_tokens * 2 * n / compute + new_tokens / decode_tokens_s
    ft = params.finetune
    trained_tokens = ft.max_steps * ft.batch_size * ft.max_seq_len if ft.epochs is None else None
    finetunes = sum(size["steps"][spec.letter] for spec in operations() if spec.needs_training_data)
    # LoRA (the fine-tuning operation trains adapters only): 4·N FLOPs per token, not 6·N.
    finetune_s = finetunes * trained_tokens * 4 * n / compute if trained_tokens else None
    checkpoint_s = (size["steps_total"] + 1) * 2 * n / 1e9   # assumed: 1 GB/s to write and read a checkpoint
    h, layers, heads = shape["hidden_size"], shape["num_hidden_layers"], shape["num_attention_heads"]
    s, b = ft.max_seq_len, ft.batch_size
    activations = layers * s * b * h * (34 + 5 * heads * s / h) + s * b * shape["vocab_size"] * 4
    kv_per_token = 2 * layers * shape["num_key_value_heads"] * (h // heads) * 2
    context = longest_prompt + ev.max_new_tokens
    memory = {"weights_bf16": 2 * n, "finetune_peak": 2 * n + activations,
              "evaluation_peak": 2 * n + DECODE_BATCH * context * kv_per_token}
    seconds = {"evaluation_per_model": per_model_s, "evaluations": per_model_s * size["evaluations"],
               "fine_tuning": finetune_s, "checkpoints": checkpoint_s}
    seconds["total"] = sum(v for v in seconds.values() if v is not None) - per_model_s
    return {"measured": False, "gpu": gpu, "rates": rates, "efficiency": EFFICIENCY, "decode_batch": DECODE_BATCH,
            "model": {"source": params.model.source, "parameters": n, "shape": shape, "shape_from": shape_source},
            "size": size, "items": items, "per_model": {"prompt_tokens": prompt_tokens, "max_new_tokens": new_tokens},
            "finetune": {"runs": finetunes, "trained_tokens_each": trained_tokens, "batch_size": b, "max_seq_len": s},
            "estimated_seconds": seconds, "memory_bytes": memory}


def format_plan_estimate(params_file, result: dict, why: list[str]) -> str:
    """Return the estimate as ``orderstudy estimate`` prints it when it cannot measure, saying so first."""
    m, size, sec, mem = result["model"], result["size"], result["estimated_seconds"], result["memory_bytes"]
    steps = ", ".join(f"{op} {k}" for op, k in size["steps"].items())
    lines = [f"study at {params_file}: NOT MEASURED here, estimated from documented rates "
             f"(orderstudy.evaluation.planning) for one {result['gpu']} GPU", "  why not measured:"]
    lines += [f"    - {reason}" for reason in why]
    lines += ["", "size",
              f"  orderings, seeds               {size['orderings']:>12,}   ({size['seeds']} seed(s))",
              f"  evaluations (distinct states)  {size['evaluations']:>12,}",
              f"  operation steps                {size['steps_total']:>12,}   ({steps})",
              f"  fine-tunes                     {result['finetune']['runs']:>12,}"
              + (f"   ({result['finetune']['trained_tokens_each']:,} tokens each at most)" if result['finetune']['trained_tokens_each'] else "")]
    for name, b in result["items"].items():
        items = f"{b['items']:>12,}" if b["items"] is not None else f"{'unknown':>12}"
        tokens = f", {b['prompt_tokens']:,} prompt tokens" if b["prompt_tokens"] is not None else ""
        lines.append(f"  items: {name:<23s} {items}   ({b['tasks']} tasks{tokens}; {b['counted']})")
    lines += [f"  prompt tokens / model          {result['per_model']['prompt_tokens']:>12,}",
              f"  generated tokens / model, max  {result['per_model']['max_new_tokens']:>12,}",
              "", f"model {m['source']}: {m['parameters'] / 1e9:.2f} B parameters (shape from {m['shape_from']})",
              "", f"estimated time on one {result['gpu']} (an upper bound: every answer generated to its full budget)",
              f"  evaluation, one model          {_hms(sec['evaluation_per_model'])}",
              f"  evaluations, all               {_hms(sec['evaluations'])}",
              f"  fine-tuning                    {_hms(sec['fine_tuning']) if sec['fine_tuning'] is not None else 'n/a (epochs)'}",
              f"  checkpoints written and read   {_hms(sec['checkpoints'])}",
              f"  total                          {_hms(sec['total'])}",
              "", "estimated GPU memory",
              f"  weights (bf16)                 {mem['weights_bf16'] / 2**30:>9.1f} GiB",
              f"  fine-tuning, peak              {mem['finetune_peak'] / 2**30:>9.1f} GiB   (batch "
              f"{result['finetune']['batch_size']} x {result['finetune']['max_seq_len']} tokens, no activation recomputation)",
              f"  evaluation, peak               {mem['evaluation_peak'] / 2**30:>9.1f} GiB   "
              f"({result['decode_batch']} sequences at once)",
              "", f"rates: {result['rates']['bf16_flops'] / 1e12:,.0f} TFLOP/s bf16, "
                  f"{result['rates']['bandwidth_bytes_s'] / 1e9:,.0f} GB/s (datasheet), at {result['efficiency']['compute']:.0%} "
                  f"of compute and {result['efficiency']['bandwidth']:.0%} of bandwidth (assumed). Measure on the GPU "
                  "itself with `orderstudy estimate PARAMS` there."]
    return "\n".join(lines)


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d} ({seconds:,} s)"


