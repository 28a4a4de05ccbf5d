"""Benchmarks behind `quic-edge bench compare` and `quic-edge bench ablation` (issue 6).

`common.py`: task splits and the adapters compared, built on the same frozen int8 MiniLM and the same targets;
`compare.py`: QuIC orders against block OFT, LoRA (PEFT), head-only and full fine-tuning through the ONNX Runtime
device loop; `ablation.py`: orders, circuit depth and layout of QuIC, trained in eager PyTorch;
`report.py`: markdown tables and plots.
"""
