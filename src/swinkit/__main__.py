"""``python -m swinkit`` runs the command-line tool (also under ``torchrun -m swinkit``)."""

from swinkit.cli import main

raise SystemExit(main())
