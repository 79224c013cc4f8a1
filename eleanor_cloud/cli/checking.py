"""``check``: does the store honour conditional writes, and what may these credentials do?

Everything eleanor_cloud promises (no two hosts advance a task, no lost update) rests on
the store refusing a create of an existing object and a compare-and-swap naming a stale
version. Some S3-compatible stores accept those headers and ignore them; this command
asks the store, and reports the credentials' permissions on the way:

1. put, conditional create: a create-if-absent of ``<prefix>/_probe/conditions.json``
   (created, or left by an earlier check), then again: the second must be refused;
2. conditional replace: a compare-and-swap naming a version it never had: refused;
3. get and list: read the probe object, list its folder;
4. delete: a *conditional* delete naming a version it never had, so that nothing is
   ever deleted: refused means allowed, access denied means not allowed. A runner's
   credentials should not delete (infra's runner policy has no ``s3:DeleteObject``),
   an operator's may: either way it is information, never a failure.

On S3 the first two are the backend's own probe (three conditional PutObject), the one
every process runs before its first write. Every write is conditional, so a bucket
policy that refuses unconditional PUTs lets them through. An fsspec filesystem without
conditional writes is refused when opened; that refusal is the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from eleanor_cloud.cli.common import CliContext, json_option, pass_cli
from eleanor_cloud.cli.exits import EXIT_FAILED
from eleanor_cloud.cli.output import Output

if TYPE_CHECKING:
    from eleanor_cloud.backends.base import ObjectBackend
    from eleanor_cloud.cli.check_doc import CheckDoc, CheckRow

__all__ = ["COMMANDS", "PROBE_NAME", "run_checks"]

# The S3 backend's probe object (eleanor_cloud.backends.s3.PROBE_NAME, equal by test):
# spelled out so that checking a local store needs no boto3.
PROBE_NAME = "_probe/conditions.json"
_STALE = "eleanor-probe-never-a-version"
_BODY = b'{"eleanor_cloud": "conditional-write probe; safe to delete"}\n'
_S3_ACTIONS = {
    "get": "s3:GetObject",
    "put": "s3:PutObject",
    "list": "s3:ListBucket",
    "delete": "s3:DeleteObject",
}
_ACTIONS = {"get": "read", "put": "write", "list": "list", "delete": "delete"}


class _Report:
    """The rows and findings gathered while checking, in order."""

    def __init__(self, actions: dict[str, str]) -> None:
        self.actions = actions
        self.rows: list[CheckRow] = []
        self.found: dict[str, bool | None] = {}

    def add(self, name: str, outcome: str, detail: str, found: bool | None = None) -> None:
        from eleanor_cloud.cli.check_doc import CheckRow

        self.rows.append(
            CheckRow.model_validate({"name": name, "outcome": outcome, "detail": detail})
        )
        self.found[name] = found

    def permission(self, name: str, allowed: bool | None, detail: str) -> None:
        action = self.actions[name]
        if allowed is None:
            self.add(name, "skipped", f"{action}: {detail}")
        else:
            self.add(
                name,
                "pass" if allowed else "fail",
                f"{action} {_allowed(allowed)}{detail}",
                allowed,
            )


def _allowed(allowed: bool) -> str:
    return "allowed" if allowed else "NOT allowed"


def _conditions(report: _Report, create: bool, replace: bool, s3: bool) -> None:
    create_how = "If-None-Match: * on" if s3 else "a create-if-absent of"
    replace_how = "If-Match naming an ETag" if s3 else "a compare-and-swap naming a version"
    report.add(
        "conditional_create",
        "pass" if create else "fail",
        f"{create_how} an existing object was refused"
        if create
        else f"{create_how} an existing object was ACCEPTED: the store ignores it, so two "
        "hosts could both run a stage",
        create,
    )
    report.add(
        "conditional_replace",
        "pass" if replace else "fail",
        f"{replace_how} the object never had was refused"
        if replace
        else f"{replace_how} the object never had was ACCEPTED: the store ignores it, so "
        "updates can be lost",
        replace,
    )


def _s3_probe(report: _Report, backend: Any) -> None:
    from eleanor_cloud.errors import AccessDenied

    try:
        verdict = backend.probe_conditions()
    except AccessDenied as exc:
        report.permission(
            "put",
            False,
            f" ({exc}; a bucket policy refusing unconditional PUTs answers 403 too when "
            "the conditional headers were stripped on the way)",
        )
        report.add("conditional_create", "skipped", "no write was allowed")
        report.add("conditional_replace", "skipped", "no write was allowed")
        return
    report.permission("put", True, " (conditional PUTs)")
    _conditions(report, verdict.create_honoured, verdict.replace_honoured, s3=True)


def _generic_probe(report: _Report, backend: ObjectBackend, key: str) -> None:
    from eleanor_cloud.backends.base import CREATE, Replace, Version
    from eleanor_cloud.errors import AccessDenied, AlreadyExists, Conflict

    try:
        backend.write(key, _BODY, CREATE)
    except AlreadyExists:
        pass  # left by an earlier check: the next create must be refused all the same
    except AccessDenied as exc:
        report.permission("put", False, f" ({exc})")
        report.add("conditional_create", "skipped", "no write was allowed")
        report.add("conditional_replace", "skipped", "no write was allowed")
        return
    report.permission("put", True, "")
    try:
        backend.write(key, _BODY, CREATE)
        create = False
    except AlreadyExists:
        create = True
    try:
        backend.write(key, _BODY, Replace(Version(_STALE)))
        replace = False
    except Conflict:
        replace = True
    _conditions(report, create, replace, s3=False)


def _reads(report: _Report, backend: ObjectBackend, key: str) -> None:
    from eleanor_cloud.errors import AccessDenied, NotFound

    try:
        backend.read(key)
        report.permission("get", True, "")
    except NotFound:
        report.permission("get", True, " (the probe object is absent)")
    except AccessDenied as exc:
        report.permission("get", False, f" ({exc})")
    folder = key.rpartition("/")[0] + "/"
    try:
        next(iter(backend.list(folder)), None)
        report.permission("list", True, f" on {folder!r}")
    except AccessDenied as exc:
        report.permission("list", False, f" ({exc})")


def _delete(report: _Report, backend: ObjectBackend, key: str) -> None:
    from eleanor_cloud.backends.base import Version
    from eleanor_cloud.errors import AccessDenied, Conflict, NotFound, NotSupported

    action = report.actions["delete"]
    runner = "a runner's credentials should not have it; an operator's may"
    # Conditional, naming a version the object never had: allowed or not, nothing is
    # deleted (an S3 token must look like an ETag, or S3 rejects it as malformed).
    stale = '"00000000000000000000000000000000"' if action.startswith("s3:") else _STALE
    try:
        backend.delete(key, if_version=Version(stale))
    except (Conflict, NotFound):
        report.add("delete", "info", f"{action} allowed ({runner})", True)
    except AccessDenied:
        report.add(
            "delete",
            "info",
            f"{action} not allowed, as a runner's should be ('delete' and 'demo --reset' "
            "need the operator's)",
            False,
        )
    except NotSupported:
        report.add("delete", "info", f"{action}: not checked (no conditional delete here)")
    else:
        report.add(
            "delete",
            "info",
            f"{action} allowed ({runner}); the store ignored the delete's condition and "
            "removed the probe object",
            True,
        )


def run_checks(url: str) -> CheckDoc:
    """Open ``url`` and run every check (see the module docstring)."""
    from eleanor_cloud.cli.check_doc import CheckDoc, Permissions
    from eleanor_cloud.errors import NotSupported
    from eleanor_cloud.keys import join_prefix
    from eleanor_cloud.store.registry import open_store

    try:
        store = open_store(url)
    except NotSupported as exc:
        report = _Report(_ACTIONS)
        report.add("open", "fail", str(exc))
        return CheckDoc.model_validate(
            {
                "store": url,
                "backend": "",
                "endpoint": None,
                "probe_key": None,
                "ok": False,
                "conditional_create": None,
                "conditional_replace": None,
                "permissions": Permissions(get=None, put=None, list=None, delete=None),
                "checks": report.rows,
            }
        )
    backend = store.backend
    s3 = callable(getattr(backend, "probe_conditions", None))
    report = _Report(_S3_ACTIONS if s3 else _ACTIONS)
    key = str(getattr(backend, "probe_key", "")) or join_prefix(store.prefix, PROBE_NAME)
    if s3:
        _s3_probe(report, backend)
    else:
        _generic_probe(report, backend, key)
    _reads(report, backend, key)
    _delete(report, backend, key)
    found = report.found
    return CheckDoc.model_validate(
        {
            "store": backend.description,
            "backend": type(backend).__name__,
            "endpoint": getattr(backend, "endpoint", None) if s3 else None,
            "probe_key": key,
            "ok": all(row.outcome != "fail" for row in report.rows),
            "conditional_create": found.get("conditional_create"),
            "conditional_replace": found.get("conditional_replace"),
            "permissions": Permissions(
                get=found.get("get"),
                put=found.get("put"),
                list=found.get("list"),
                delete=found.get("delete"),
            ),
            "checks": report.rows,
        }
    )


@click.command("check")
@click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="The store to check (default: the global --store / $ELEANOR_STORE).",
)
@json_option
@pass_cli
def check_cmd(state: CliContext, store_url: str | None, as_json: bool) -> None:
    """Check that the store honours conditional writes, and what these credentials may do.

    Writes only <prefix>/_probe/conditions.json (conditionally; it is never a task) and
    deletes nothing. Exits 0 when every check passed, 1 when one failed.
    """
    doc = run_checks(store_url or state.store_url)
    out = Output(json_mode=as_json)
    if as_json:
        out.json(doc)
    else:
        where = f" at {doc.endpoint}" if doc.endpoint else ""
        probe = f" (probe object {doc.probe_key})" if doc.probe_key else ""
        out.line(f"store {doc.store}{where}{probe}")
        out.table(
            ["CHECK", "RESULT", "DETAIL"],
            [[row.name.replace("_", " "), row.outcome, row.detail] for row in doc.checks],
        )
        out.line(
            "ok: conditional writes are honoured and these credentials can run tasks"
            if doc.ok
            else "FAILED: see the checks above",
            style="green" if doc.ok else "bold red",
        )
    if not doc.ok:
        raise click.exceptions.Exit(EXIT_FAILED)


COMMANDS = (check_cmd,)
