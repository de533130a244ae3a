"""The ``bam`` command line: ``app`` parses and dispatches, ``commands`` holds the after-training commands."""
