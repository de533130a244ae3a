"""``python -m bam``: the same command line as the ``bam`` script."""

from bam.cli.app import main

if __name__ == "__main__":
    raise SystemExit(main())
