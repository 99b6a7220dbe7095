"""``python -m submission`` runs the ``bratskit`` command."""

from submission.cli import main

main()
