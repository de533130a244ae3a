"""Reports on trained models: result tables, GLUE submission files, Hugging Face export."""
