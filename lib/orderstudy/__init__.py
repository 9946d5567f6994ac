"""orderstudy: does the order of fine-tuning, pruning and quantization matter, and how much?"""

__version__ = "0.1.0"
