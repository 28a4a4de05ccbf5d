"""The ablation's configurations, (group, adapter) in the order of its table: no imports, so that the command
line's parser (built at start-up, without torch) lists them from here (quic_edge.bench.cli)."""

# (group, adapter) in the order of the table
ROWS = (
    ("orders", "quic1-n15"),
    ("orders", "quic12"),
    ("orders", "quic123"),
    ("orders", "quic2"),
    ("orders", "quic23"),
    ("orders", "quic1"),
    ("depth", "quic12-d1"),
    ("depth", "quic12-d3"),
    ("depth", "quic12-d7"),
    ("layout", "quic12-brick"),
    ("orthogonality", "quic12-free"),
    ("blocks", "quic12-b1"),
    ("blocks", "quic12-b2"),
    ("blocks", "quic12-b4"),
    ("blocks", "quic12-b6"),
    ("targets", "quic12-qk"),
    ("targets", "lora8-qk"),
    ("targets", "quic12-vo"),
    ("targets", "quic12-vf"),
    ("targets", "lora8-vf"),
    ("targets", "quic12-of"),
    ("targets", "lora8-of"),
    ("targets", "quic12-vfo"),
    ("targets", "lora8-vfo"),
    ("reference", "head"),
    ("reference", "lora8"),
    ("reference", "full"),
)
