"""bam: Born-Again Multi-task networks for NLU on PyTorch and Hugging Face."""

__version__ = "0.1.0"
