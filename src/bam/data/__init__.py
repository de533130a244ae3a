"""Data: readers, download, tokenization cache, batching and task sampling."""
