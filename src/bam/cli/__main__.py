"""``python -m bam.cli`` (as ``accelerate launch -m bam.cli`` runs it) is the ``bam`` command."""

from bam.cli.app import main

raise SystemExit(main())
