"""`python -m gantlitz` (also what `torchrun -m gantlitz` runs)."""

from .cli import main

main()
