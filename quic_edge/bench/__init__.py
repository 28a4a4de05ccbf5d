"""Benchmarks behind `quic-edge bench compare` and `quic-edge bench ablation` (issue 6).

`common.py`: task splits and the adapters compared, built on the same frozen int8 MiniLM and the same targets;
`compare.py`: QuIC orders against block OFT, LoRA (PEFT), head-only and full fine-tuning through the ONNX Runtime
device loop; `ablation.py`: orders, circuit depth, layout and orthogonality of QuIC, as adapters of the comparison;
`ablation_rows.py`: the ablation's configurations, without imports (the parser lists them); `report.py`: markdown
tables and plots.
"""
