"""params/llama-3.2-1b-law.yaml: its pruning defaults give a Llama-3.2-1B config transformers accepts."""

from transformers import AutoConfig, LlamaConfig

from orderstudy.core import paths
from orderstudy.core.params import load_params
from orderstudy.operations.prune.structured import width_config, width_shape_problem

PARAMS = paths.PARAMS_DIR / "llama-3.2-1b-law.yaml"


def _llama_3_2_1b() -> LlamaConfig:
    # Llama-3.2-1B's shapes (its config.json): 16 layers, hidden 2048, 32 heads in 8 key/value groups.
    return LlamaConfig(num_hidden_layers=16, hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
                       intermediate_size=8192, head_dim=64, vocab_size=128256, tie_word_embeddings=True)


def test_the_llama_params_prune_to_a_config_transformers_accepts_and_reloads(tmp_path):
    params = load_params(PARAMS)
    assert params.model.source == "meta-llama/Llama-3.2-1B-Instruct" and params.device == "cuda"
    config = _llama_3_2_1b()
    assert width_shape_problem(config, params.prune) is None
    pruned = width_config(config, params.prune)
    assert (pruned.num_attention_heads, pruned.num_key_value_heads, pruned.intermediate_size) == (16, 4, 5760)
    pruned.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert (reloaded.num_attention_heads, reloaded.head_dim, reloaded.hidden_size) == (16, 64, 2048)


def test_the_demos_head_sparsity_would_be_refused_on_llama_3_2_1b():
    # Why the Llama file cannot take the demo's defaults: 0.3 of 8 groups keeps 6, 24 heads.
    demo = load_params(paths.PARAMS_DIR / "demo.yaml").prune
    problem = width_shape_problem(_llama_3_2_1b(), demo.model_copy(update={"method": "width"}))
    assert problem is not None and "keeps 24 of 32 attention heads" in problem
    assert "0.5 (16 heads kept)" in problem
