"""``python -m submission`` runs the ``bratskit`` command (how the image, which installs
no console scripts, calls it)."""

from submission.cli import main

main(prog_name="bratskit")
