"""One prompt renderer: the tokens a budget and a cut are computed on are the tokens lm-eval sends the model.

For every task of every benchmark (all 20 LawBench tasks, every MMLU subject, log-likelihood and
generative MMLU), lm-eval builds its requests from the task files the suite wrote, through its own
chat-template and encoding code (HFLM's), and each context's tokens are compared with what
``core.prompts`` renders for the same row. A context small enough that prompts are cut checks
that the cut prompt fits exactly where the budget says.
"""

import pytest
import torch

from orderstudy.checkpoints import models
from orderstudy.core import prompts
from orderstudy.core.benchmark import get_benchmark
from orderstudy.core.params import EvaluationParams
from orderstudy.evaluation import backends
from orderstudy.evaluation import engine as evaluation

CONTEXT = 640  # SmolLM2's tokenizer; small enough that the longest LawBench prompts (2-5, 3-x) are cut


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    tokenizer = models.load_tokenizer(tiny_model_dir)
    model = models.load_model(tiny_model_dir, "float32")
    return backends.make_hf_lm(model=model, tokenizer=tokenizer, device="cpu", batch_size=1, params=EvaluationParams())


def _requests(suite, lm, name, chat):
    manager = evaluation.task_manager(suite)
    task = evaluation.built_tasks(suite, manager, [name])[0]
    task.build_all_requests(apply_chat_template=chat, chat_template=lm.apply_chat_template if chat else None)
    return sorted(task.instances, key=lambda i: (i.doc_id, i.idx))


@pytest.mark.parametrize("scoring", ["loglikelihood", "generative"])
def test_every_task_renders_token_for_token_as_lm_eval_does(lm, lawbench_dir, mmlu_dir, tmp_path, scoring):
    params = EvaluationParams(lawbench_data=str(lawbench_dir), mmlu_data=str(mmlu_dir), lawbench_items_per_task=2,
                              mmlu_items_per_subject=1, mmlu_scoring=scoring, max_new_tokens=64, cherrant_data="packaged")
    tokenizer = lm.tokenizer
    suite = evaluation.build_suite(params, 0, tmp_path, tokenizer, CONTEXT)
    assert len(suite.benchmarks["lawbench"]) == 20 and len(suite.benchmarks["stem"]) == 19
    compared, cut = 0, 0
    for bench, tasks in suite.benchmarks.items():
        spec = get_benchmark(bench)
        chat = suite.chat(bench)
        assert chat == (bench == "lawbench" or scoring == "generative")
        for task, name in tasks.items():
            rendered = evaluation.task_prompts(suite, name)
            instances = _requests(suite, lm, name, chat)
            # One request per item (generation), or four per item, one per letter, on the same context.
            contexts = [i.args[0] for i in instances if i.idx == 0]
            assert len(contexts) == len(rendered), name
            for prompt, context in zip(rendered, contexts):
                ours = prompts.prompt_ids(tokenizer, prompt, chat)
                if spec.request_type(params) == "generation":
                    sent = lm.tok_batch_encode([context])[0][0].tolist()
                else:
                    sent = lm.tok_encode(context)
                assert ours == sent, f"{name}: the renderer and lm-eval differ"
                budget = suite.max_new_tokens(name) or 1
                assert len(ours) + budget <= CONTEXT, f"{name}: the prompt and its budget exceed the context"
                compared += 1
            cut += suite.generation.get(bench, {}).get(task, {}).get("truncated_prompts", 0)
    assert compared == 20 * 2 + 19 + 3
    assert cut >= 3  # the small context cut some LawBench prompts: the cut ones were compared too


def test_the_mmlu_prompt_has_lm_evals_description_and_choices(lawbench_dir, mmlu_dir):
    item = {"question": "  What is 2 + 2? ", "choices": ["3", "4", "5", "22"], "answer": 1}
    prompt = get_benchmark("stem").prompt("college_mathematics", item)
    assert prompt.system == "The following are multiple choice questions (with answers) about college mathematics.\n\n"
    assert prompt.user == "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    assert prompt.text() == prompt.system + prompt.user
    assert prompt.messages()[0] == {"role": "system", "content": prompt.system}


def test_training_pairs_and_evaluation_share_the_renderer(smollm2_tokenizer):
    # A training pair's prompt is the evaluated prompt's tokens, followed by the answer and EOS.
    pair = prompts.encode_pair(smollm2_tokenizer, "问题：甲乙两人的纠纷？\n答案:", "[类别]合同纠纷", 512, True)
    assert pair["input_ids"][:len(prompts.prompt_ids(smollm2_tokenizer, "问题：甲乙两人的纠纷？\n答案:", True))] == \
        prompts.prompt_ids(smollm2_tokenizer, "问题：甲乙两人的纠纷？\n答案:", True)
    assert pair["input_ids"][-1] == smollm2_tokenizer.eos_token_id
    assert torch.tensor(pair["labels"]).ne(-100).sum().item() == len(prompts.answer_ids(smollm2_tokenizer, "[类别]合同纠纷"))
