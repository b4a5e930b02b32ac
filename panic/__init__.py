"""The `panic` command's lowest layer: its dispatcher, the exit-code error
root and argparse types, imported by tools/, receiver/ and host_sim/
alike and importing none of them (docs/architecture.md, "Layers")."""
