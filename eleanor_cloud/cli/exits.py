"""Exit codes, and the message for the one failure that can happen before click loads.

No imports beyond the standard library: :func:`eleanor_cloud.cli.main` needs this
module to explain a missing ``cli`` extra, which is exactly when click is absent.
"""

from __future__ import annotations

__all__ = [
    "CLI_EXTRA_MODULES",
    "EXIT_BUDGET",
    "EXIT_FAILED",
    "EXIT_KEYBOARD_INTERRUPT",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "missing_extra_message",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_STOPPED = 75  # 'run' stopped by a signal with work left (eleanor_cloud.aws's too)
EXIT_KEYBOARD_INTERRUPT = 130

# The top-level modules the ``cli`` extra installs (pyproject.toml keeps them in step).
CLI_EXTRA_MODULES = frozenset({"click", "rich"})


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """The install hint when ``exc`` is a module of the ``cli`` extra, else ``None``.

    ``None`` means the missing module is somebody else's (a user's factory, a broken
    install of a dependency): that error must surface as it is, not as a wrong hint.
    """
    root = (exc.name or "").partition(".")[0]
    if root not in CLI_EXTRA_MODULES:
        return None
    return (
        f"eleanor-cloud: error: the command line needs {root!r}, which is not installed; "
        "install it with: pip install 'eleanor-cloud[cli]'"
    )
