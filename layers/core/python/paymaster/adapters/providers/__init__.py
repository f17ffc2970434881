"""One module per provider kind: pure `to_wire` / `from_wire` functions and a thin transport."""
