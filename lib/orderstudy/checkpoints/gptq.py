"""GPTQ checkpoints (GPTQModel's format): recognise them, load the library, dequantize their layers.

transformers loads a GPTQ checkpoint with ``from_pretrained`` alone (through optimum and
GPTQModel) and picks GPTQModel's kernel for the device. On a CPU, 4-bit layers run
``TorchAtenLinear``: its first eval-mode forward without gradients repacks the weight for torch's
int4 CPU matmul (bf16 compute), after which the layer's own codes are gone and it can no longer be
dequantized. A dense copy is therefore made from a model fresh from disk (``dequantize``), as
bitsandbytes' 4-bit layers are (numerics.py).
"""

from __future__ import annotations

import os

import torch

LIBRARY = "GPTQModel"


def is_gptq(quant: dict | None) -> bool:
    """Whether a saved ``quantization_config`` is GPTQ's.

    >>> is_gptq({"quant_method": "gptq", "bits": 4}), is_gptq({"load_in_4bit": True}), is_gptq(None)
    (True, False, False)
    """
    return bool(quant) and quant.get("quant_method") == "gptq"


def prepare_library() -> str:
    """Return GPTQModel's version, after giving its thread pools what a small CPU needs.

    GPTQModel's default CPU pool has (cores + 1) // 2 workers and its model loader asks for two
    of them: on a 2-core machine quantization fails ("requests 2 workers but parent 'cpu' only
    has 1"). ``GPTQMODEL_CPU_WORKERS`` (its own setting) is left alone when the user set it.
    """
    from importlib.metadata import version

    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, ((os.cpu_count() or 1) + 1) // 2)))
    return version("gptqmodel")


def quant_layers(model) -> dict[str, torch.nn.Module]:
    """Return ``{name: layer}`` for the model's GPTQModel quantized linear layers (none for another model)."""
    try:
        from gptqmodel.nn_modules.qlinear import BaseQuantLinear
    except ImportError:
        return {}
    return {name: m for name, m in model.named_modules() if isinstance(m, BaseQuantLinear)}


def is_repacked(layer) -> bool:
    """Whether a GPTQ layer has run an inference forward on a CPU (its codes repacked for the int4 kernel)."""
    return getattr(layer, "linear_mode", None) == "inference"


def dequantized_weight(layer) -> torch.Tensor:
    """Return the ``(out, in)`` weight a GPTQ layer's codes stand for: ``scale * (code - zero)``, float32."""
    if is_repacked(layer):
        raise RepackedError("a GPTQ layer that ran an inference forward on a CPU has its codes repacked for "
                            "torch's int4 kernel; load the model fresh from disk to dequantize it")
    return layer.dequantize_weight().T.float()


def dequantize(model, dtype: torch.dtype):
    """Return ``model`` with every GPTQ layer replaced, in place, by a dense ``nn.Linear`` of its dequantized weight."""
    for name, layer in quant_layers(model).items():
        dense = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                dtype=dtype, device=layer.qweight.device)
        with torch.no_grad():
            dense.weight.copy_(dequantized_weight(layer).to(dtype))
            if layer.bias is not None:
                dense.bias.copy_(layer.bias.to(dtype))
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, dense)
    return model


class RepackedError(RuntimeError):
    """A GPTQ layer whose codes GPTQModel's CPU kernel already repacked."""
