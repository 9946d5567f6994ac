"""A tiny Llama model made on the fly, real training text, and the states operations make from them.

The model has SmolLM2's tokenizer (so chat templates work) around a 3-layer, 64-wide decoder with
4 attention heads in 2 key/value groups: every operation runs on it in well under a second or two.
``states`` builds a chain of operations once per test session and reuses its prefixes, as the
state store does for orderings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from orderstudy.core import paths
from orderstudy.core.operation import get_operation
from orderstudy.operations.common import OperationContext
from orderstudy.operations.finetune import FinetuneParams
from orderstudy.operations.prune import PruneParams
from orderstudy.operations.quantize import QuantizeParams

TOKENIZER_SOURCE = paths.MODELS_CACHE / "SmolLM2-135M-Instruct"

# Short legal questions and their answers: the kind of pairs fine-tuning and calibration read.
EXAMPLES = [
    {"id": f"ex/{i}", "prompt": prompt, "answer": answer}
    for i, (prompt, answer) in enumerate([
        ("甲盗窃他人财物，数额较大，应当以什么罪论处？", "盗窃罪。"),
        ("合同一方当事人迟延履行主要债务，经催告后在合理期限内仍未履行，另一方可以怎么做？", "可以解除合同。"),
        ("What is the minimum age to vote in most national elections?", "Eighteen years."),
        ("Which court hears appeals from a district court in the federal system?", "The court of appeals for that circuit."),
        ("民事诉讼的一审普通程序审理期限一般是多久？", "六个月。"),
        ("Is a verbal contract for the sale of land enforceable under the statute of frauds?", "No, it must be in writing."),
        ("What does habeas corpus protect against?", "Unlawful detention."),
        ("劳动合同试用期最长不得超过几个月？", "六个月。"),
        ("Who bears the burden of proof in a criminal trial?", "The prosecution."),
        ("What is the standard of proof in a civil case?", "The balance of probabilities."),
        ("著作权中的署名权保护期限是多久？", "不受限制。"),
        ("Can a minor ratify a contract after reaching majority?", "Yes, by conduct or express words."),
    ])
]

# The operation parameters the tests name, short enough for two CPU cores.
CAL = dict(calibration_samples=6, calibration_seq_len=48)
STEPS = {
    "Q:nf4": ("Q", QuantizeParams(method="nf4", compute_dtype="float32")),
    "Q:fp4": ("Q", QuantizeParams(method="fp4", double_quant=False, compute_dtype="float32")),
    "Q:int8": ("Q", QuantizeParams(method="int8")),
    # The tiny model's rows are 64 and 128 wide: groups of 32 give every layer several groups.
    "Q:gptq": ("Q", QuantizeParams(method="gptq", group_size=32, **CAL)),
    "Q:gptq-8bit": ("Q", QuantizeParams(method="gptq", bits=8, group_size=32, desc_act=True, **CAL)),
    "P:width": ("P", PruneParams(method="width", sparsity=0.5, head_sparsity=0.5, multiple_of=16, **CAL)),
    "P:width-activation": ("P", PruneParams(method="width", sparsity=0.5, head_sparsity=0.5, multiple_of=16,
                                            importance="activation", **CAL)),
    "P:mlp_channels": ("P", PruneParams(method="mlp_channels", sparsity=0.25, multiple_of=16, **CAL)),
    "P:depth": ("P", PruneParams(method="depth", sparsity=0.34, **CAL)),
    "P:magnitude": ("P", PruneParams(method="magnitude", sparsity=0.5, **CAL)),
    "P:wanda": ("P", PruneParams(method="wanda", sparsity=0.5, **CAL)),
    "P:2:4": ("P", PruneParams(method="2:4", importance="activation", **CAL)),
    "P:magnitude-sparse": ("P", PruneParams(method="magnitude", sparsity=0.5, storage="sparse", **CAL)),
    "P:wanda-sparse": ("P", PruneParams(method="wanda", sparsity=0.5, storage="sparse", **CAL)),
    "P:2:4-sparse": ("P", PruneParams(method="2:4", storage="sparse", **CAL)),
    "F": ("F", FinetuneParams(max_steps=1, batch_size=2, max_seq_len=96, lora_r=4, lora_dropout=0.0,
                              validation_fraction=0.25, learning_rate=1e-2)),
    "F:requantize": ("F", FinetuneParams(max_steps=1, batch_size=2, max_seq_len=96, lora_r=4, lora_dropout=0.0,
                                         validation_fraction=0.25, learning_rate=1e-2, merge="requantize")),
    "F:adapter": ("F", FinetuneParams(max_steps=1, batch_size=2, max_seq_len=96, lora_r=4, lora_dropout=0.0,
                                      validation_fraction=0.25, learning_rate=1e-2, merge="adapter")),
    "F:drop-sparsity": ("F", FinetuneParams(max_steps=1, batch_size=2, max_seq_len=96, lora_r=4, lora_dropout=0.0,
                                            validation_fraction=0.25, learning_rate=1e-2, keep_sparsity=False)),
}


def context() -> OperationContext:
    """Return the context every test operation runs under: float32 (no native bf16 here), CPU."""
    return OperationContext(dtype="float32", device="cpu", seed=0, training_examples=EXAMPLES,
                            calibration_examples=EXAMPLES, requantize_params=STEPS["Q:gptq"][1],
                            requantize_examples=EXAMPLES, progress=lambda message: None)


def make_tiny_model(out_dir: Path) -> Path:
    """Save a randomly initialised 3-layer Llama with SmolLM2's tokenizer in ``out_dir``."""
    return _save_random_llama(out_dir, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256)


def make_360m_shaped_model(out_dir: Path, layers: int = 2) -> Path:
    """Save a random Llama with SmolLM2-360M's widths and head layout (hidden 960, 15 heads in 5
    key/value groups of 3, head_dim 64, MLP 2560, tied embeddings) but ``layers`` decoder layers,
    with SmolLM2's tokenizer. The vocabulary stays the tokenizer's 49,152: its token ids reach it."""
    return _save_random_llama(out_dir, hidden_size=960, intermediate_size=2560, num_hidden_layers=layers,
                              num_attention_heads=15, num_key_value_heads=5, head_dim=64,
                              max_position_embeddings=8192, rope_theta=100000.0)


def _save_random_llama(out_dir: Path, **shape) -> Path:
    """Save a Llama of ``shape`` (seeded random weights, float32, tied embeddings) with SmolLM2's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_SOURCE)
    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


class States:
    """Builds chains of operations on the tiny model once, keyed by their step names."""

    def __init__(self, root: Path, base: Path):
        self.root = root
        self.base = base
        self.records: dict[tuple, dict] = {(): {}}
        self.dirs: dict[tuple, Path] = {(): base}

    def get(self, *steps: str) -> Path:
        """Return the checkpoint directory after applying ``steps`` (names in ``STEPS``) to the base."""
        chain = tuple(steps)
        if chain not in self.dirs:
            parent = self.get(*chain[:-1])
            op, params = STEPS[chain[-1]]
            out = self.root / "_".join(s.replace(":", "-") for s in chain) / "model"
            if out.parent.exists():
                shutil.rmtree(out.parent)  # left by a build that failed in an earlier test
            out.parent.mkdir(parents=True)
            self.records[chain] = get_operation(op).apply(parent, out, params, context())
            self.dirs[chain] = out
        return self.dirs[chain]

    def record(self, *steps: str) -> dict:
        self.get(*steps)
        return self.records[tuple(steps)]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    if not (TOKENIZER_SOURCE / "tokenizer.json").is_file():
        pytest.skip(f"{TOKENIZER_SOURCE}: the default model's tokenizer is missing; run `make model`")
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def states(tmp_path_factory, tiny_model) -> States:
    return States(tmp_path_factory.mktemp("states"), tiny_model)


@pytest.fixture
def ctx() -> OperationContext:
    return context()


def logits(model, text_ids: list[int] | None = None) -> torch.Tensor:
    """Return the model's logits on a fixed short input, without gradients."""
    ids = torch.tensor([text_ids or [1, 504, 3165, 314, 260, 1345, 28, 2119, 30, 2]])
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.fixture(scope="session")
def step_params() -> dict:
    """The operation parameters the tests name: ``{name: (operation letter, params)}``."""
    return STEPS


@pytest.fixture(scope="session")
def run_logits():
    """Return a function giving a model's logits on a fixed short input."""
    return logits


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Run torch on one thread: the tiny model gains nothing from two, and on cores shared with
    other work two threads spin-wait for each other (measured: a fine-tune 4x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
