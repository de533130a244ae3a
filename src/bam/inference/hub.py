"""Publish an exported folder to the Hugging Face Hub (``bam export --push-to-hub REPO``).

``huggingface_hub`` comes with ``transformers``; the token is the one it finds itself (``HF_TOKEN``,
or ``hf auth login``'s file). Without a token, or when the Hub cannot be reached, the user gets one
line saying which, never the HTTP client's traceback.
"""

from __future__ import annotations

from pathlib import Path

from bam.errors import BamError


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed request raises: ``OSError`` (HTTP status, offline mode), the HTTP client's own."""
    errors: list[type[BaseException]] = [OSError]
    try:  # huggingface_hub >= 1.0 re-exports its HTTP client's base error
        from huggingface_hub.errors import HTTPError

        errors.append(HTTPError)
    except ImportError:  # older ones use requests, whose errors are OSErrors
        pass
    return tuple(errors)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Create ``repo_id`` (a model repo; kept if it exists) and upload ``folder`` to it; its URL."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise BamError(f"--push-to-hub {repo_id!r}: not a repository id ({_first_line(err)})") from None
    token = token or get_token()
    if not token:
        raise BamError(
            f"--push-to-hub {repo_id}: no Hugging Face token; run `hf auth login` or set HF_TOKEN "
            f"(the export is in {folder})"
        )
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message="Upload model exported with bam",
        )
    except _network_errors() as err:
        raise BamError(
            f"--push-to-hub {repo_id}: the Hub refused or could not be reached ({_first_line(err)}); "
            f"the export is in {folder}"
        ) from None
    return str(url)
