"""Load and throughput harness for Tuition (see bench/README.md).

``python -m bench`` drives complete payment flows over HTTP against production-style
processes; ``python -m bench.ledger`` measures the ledger's posting throughput.
"""
