"""What a checkpoint directory holds, read from its files without loading a model.

``describe(model_dir)`` weighs each part of the model (the embedding, the decoder layers, the
final norm, the output head or "tied", an adapter beside the base), says in what dtype and
quantization each part is stored, counts the logical parameters (a packed 4-bit weight counts its
unpacked size) and measures the fraction of exactly-zero weights in the decoder's linear layers.

Sizes, dtypes and shapes come from the safetensors headers. The zero fraction needs the weights
themselves, read tensor by tensor (no model is built). For quantized weights it is counted on the
stored codes: an int8 code 0, or a 4-bit code whose value in the layer's code table is 0 (NF4 and
FP4 both have an exact zero), which is exactly where the dequantized weight is zero; GPTQ's packed
codes are not counted. Note that
quantization alone rounds the smallest weights to zero: a dense NF4 model shows a few percent of
zeros (about 8% for Gaussian-like weights) without any pruning. ``declared_sparsity`` says what
pruning intended (the ``orderstudy_sparsity`` config entry), so the two can be told apart.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from . import sparse_format
from .sparse_format import SPARSITY_CONFIG_KEY

PARTS = ("embed_tokens", "layers", "norm", "lm_head", "adapter", "other")
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SAFETENSORS_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
# Tensors bitsandbytes saves beside a quantized weight: statistics, not parameters.
QUANT_STATE_MARKERS = (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.", ".SCB",
                       ".weight_format")


def read_header(path: Path) -> tuple[dict, dict, int]:
    """Return ``(tensors, metadata, header_bytes)`` of a safetensors file from its header alone."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    metadata = header.pop("__metadata__", None) or {}
    return header, metadata, 8 + size


FLOATING_DTYPES = ("F64", "F32", "F16", "BF16")


def bf16_weights_bytes(model_dir: Path) -> int:
    """Return what a checkpoint's weight files would weigh in bf16: floating-point tensors at 2 bytes a value.

    Computed from the safetensors headers alone (shapes and dtypes): every floating-point tensor
    counts 2 bytes per value, whatever dtype it is stored in (a base saved in fp32 on a CPU
    without bf16 counts as half its size); other tensors (integer codes, masks) count as stored;
    the headers count as they are.
    """
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        tensors, _, header_bytes = read_header(path)
        total += header_bytes
        for meta in tensors.values():
            stored = meta["data_offsets"][1] - meta["data_offsets"][0]
            total += 2 * int(np.prod(meta["shape"], dtype=np.int64)) if meta["dtype"] in FLOATING_DTYPES else stored
    return total


def part_of(name: str) -> str:
    """Return the part of the model a tensor belongs to.

    >>> part_of("model.layers.3.mlp.up_proj.weight.absmax"), part_of("lm_head.weight"), part_of("model.norm.weight")
    ('layers', 'lm_head', 'norm')
    """
    if "lora_" in name:
        return "adapter"
    if "embed_tokens" in name:
        return "embed_tokens"
    if ".layers." in name:
        return "layers"
    if name.startswith("lm_head") or ".lm_head." in name:
        return "lm_head"
    if name.endswith("norm.weight") or name.endswith("norm.bias"):
        return "norm"
    return "other"


def describe(model_dir: Path) -> dict:
    """Return the parts, sizes, dtypes, quantization, parameters and zeros of the checkpoint in ``model_dir``."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no .safetensors file; not a checkpoint this project writes")
    sparse = sparse_format.is_sparse_checkpoint(model_dir)
    adapter = (model_dir / "adapter_config.json").is_file()
    quant_config = config.get("quantization_config") or {}
    gptq_bits = quant_config.get("bits") if quant_config.get("quant_method") == "gptq" else None
    parts: dict[str, dict] = {}
    header_bytes = 0
    zeros = linear_total = 0
    for path in files:
        tensors, metadata, overhead = read_header(path)
        header_bytes += overhead
        is_adapter_file = path.name.startswith("adapter_model")
        sparse_shapes = json.loads(metadata.get(sparse_format.SHAPES_METADATA_KEY, "{}"))
        quant_shapes = _four_bit_shapes(path, tensors)
        for name, meta in tensors.items():
            part = "adapter" if is_adapter_file else part_of(name)
            entry = parts.setdefault(part, {"bytes": 0, "parameters": 0, "dtypes": set(), "quantization": set()})
            entry["bytes"] += meta["data_offsets"][1] - meta["data_offsets"][0]
            logical = _logical_weight(name, meta, sparse_shapes, quant_shapes, gptq_bits)
            if logical is None:
                continue  # quantization statistics or a sparse mask: bytes, not parameters
            shape, dtype, quantization = logical
            entry["parameters"] += int(np.prod(shape)) if shape else 1
            entry["dtypes"].add(dtype)
            if quantization:
                entry["quantization"].add(quantization)
        if not is_adapter_file:
            z, n = _linear_zeros(path, tensors, sparse_shapes, quant_shapes)
            zeros, linear_total = zeros + z, linear_total + n
    tied = bool(config.get("tie_word_embeddings")) and "lm_head" not in parts
    described = {name: _finish(parts[name]) for name in PARTS if name in parts}
    if tied:
        described["lm_head"] = "tied"
    base_parts = [p for name, p in described.items() if isinstance(p, dict) and name != "adapter"]
    return {
        "format": "sparse" if sparse else ("quantized base + adapter" if adapter else "huggingface"),
        "weights_bytes": sum(p["bytes"] for p in described.values() if isinstance(p, dict)) + header_bytes,
        "header_bytes": header_bytes,
        "parameters": sum(p["parameters"] for p in base_parts),
        "parts": described,
        "linear_zero_fraction": round(zeros / linear_total, 6) if linear_total else None,
        "declared_sparsity": config.get(SPARSITY_CONFIG_KEY),
    }


def _finish(entry: dict) -> dict:
    quant = sorted(entry["quantization"])
    return {"bytes": entry["bytes"], "parameters": entry["parameters"], "dtypes": sorted(entry["dtypes"]),
            "quantization": None if not quant else quant[0] if len(quant) == 1 else quant}


def _four_bit_shapes(path: Path, tensors: dict) -> dict[str, dict]:
    """Return ``{weight name: bitsandbytes quant state}`` for the 4-bit weights of a file."""
    states = {}
    for name in tensors:
        marker = ".quant_state.bitsandbytes__"
        if marker in name:
            blob = _read_tensor_bytes(path, tensors, name)
            states[name.split(marker)[0]] = json.loads(blob.decode())
    return states


def _read_tensor_bytes(path: Path, tensors: dict, name: str) -> bytes:
    _, _, overhead = read_header(path)
    start, end = tensors[name]["data_offsets"]
    with open(path, "rb") as fh:
        fh.seek(overhead + start)
        return fh.read(end - start)


def _logical_weight(name: str, meta: dict, sparse_shapes: dict, quant_shapes: dict, gptq_bits: int | None = None):
    """Return ``(shape, dtype, quantization)`` of the weight a stored tensor holds, or None for a side tensor.

    A GPTQ weight is its packed codes (``qweight``: ``32 / bits`` codes an int32, input rows
    packed); its scales, zero points and group index (``scales``, ``qzeros``, ``g_idx``) are side tensors.

    >>> _logical_weight("model.layers.0.mlp.up_proj.qweight", {"dtype": "I32", "shape": [8, 128]}, {}, {}, 4)
    ([128, 64], 'int4', 'gptq')
    >>> _logical_weight("model.layers.0.mlp.up_proj.scales", {"dtype": "F16", "shape": [2, 128]}, {}, {}, 4) is None
    True
    """
    if gptq_bits:
        if name.endswith(".qweight"):
            rows, cols = meta["shape"]
            return [cols, rows * 32 // gptq_bits], f"int{gptq_bits}", "gptq"
        if name.endswith((".qzeros", ".scales", ".g_idx")):
            return None
    if name.endswith(sparse_format.MASK_SUFFIX):
        return None
    if name.endswith(sparse_format.VALUES_SUFFIX):
        base = name[:-len(sparse_format.VALUES_SUFFIX)]
        return sparse_shapes[base], SAFETENSORS_DTYPE_NAMES[meta["dtype"]], None
    if name in quant_shapes:
        state = quant_shapes[name]
        return state["shape"], "uint8", state["quant_type"]  # two 4-bit codes a byte
    if any(marker in name for marker in QUANT_STATE_MARKERS):
        return None
    if meta["dtype"] == "I8":
        return meta["shape"], "int8", "int8"
    return meta["shape"], SAFETENSORS_DTYPE_NAMES.get(meta["dtype"], meta["dtype"]), None


def _is_linear_weight(name: str) -> bool:
    return ".layers." in name and "lora_" not in name and any(name.endswith(f".{n}.weight") for n in LINEAR_NAMES)


def _linear_zeros(path: Path, tensors: dict, sparse_shapes: dict, quant_shapes: dict) -> tuple[int, int]:
    """Return ``(zeros, weights)`` over the decoder's linear weights stored in one file."""
    from safetensors import safe_open

    zeros = total = 0
    with safe_open(path, framework="pt") as f:
        for base, shape in sparse_shapes.items():
            if _is_linear_weight(base):
                numel = int(np.prod(shape))
                mask = f.get_tensor(base + sparse_format.MASK_SUFFIX).numpy()
                stored = int(np.unpackbits(mask, count=numel).sum())
                zeros += numel - stored
                total += numel
        for name, meta in tensors.items():
            if not _is_linear_weight(name):
                continue
            if name in quant_shapes:
                state = quant_shapes[name]
                codes = f.get_tensor(name).numpy().reshape(-1)
                table = f.get_tensor(name + ".quant_map").float().numpy()
                zero_codes = np.flatnonzero(table == 0)
                numel = int(np.prod(state["shape"]))
                nibbles = np.empty(codes.size * 2, dtype=np.uint8)
                nibbles[0::2], nibbles[1::2] = codes >> 4, codes & 0x0F
                zeros += int(np.isin(nibbles[:numel], zero_codes).sum())
                total += numel
            else:
                weight = f.get_tensor(name)
                zeros += int((weight == 0).sum())
                total += weight.numel()
    return zeros, total
