"""``python -m bam``: the same command line as the ``bam`` script."""

from bam.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
