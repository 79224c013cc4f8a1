"""fsspec backend: conditional writes on the fsspec filesystems that can do them atomically.

``open_store("fsspec+<protocol>://...", storage_options={...})``, ``gs://``, ``gcs://``,
``az://``, ``abfs://``, ``abfss://`` URLs, or ``open_store(url, filesystem=fs)`` with a
filesystem you built, all land here. fsspec's own API has no compare-and-swap and its
``pipe_file(mode="create")`` is check-then-write on several filesystems, so each
filesystem eleanor_cloud trusts gets its own small backend that speaks its service's
preconditions directly (chosen by the filesystem's class, subclasses included). Each is
an :class:`~eleanor_cloud.backends.base.ObjectBackend` like any other;
:class:`FsspecBackend` picks one and checks keys before handing it anything:

=================  ==========================  ===============================  ==========
filesystem         create-if-absent            compare-and-swap                 version
=================  ==========================  ===============================  ==========
s3fs               PUT ``If-None-Match: *``    PUT ``If-Match: <etag>``         ETag
gcsfs              ``ifGenerationMatch=0``     ``ifGenerationMatch=<gen>``      generation
adlfs              ``mode="create"``           ``etag`` + ``IfNotModified``     ETag
LocalFileSystem    :class:`LocalBackend`       :class:`LocalBackend`            content hash
MemoryFileSystem   a process-wide lock         a process-wide lock              content hash
=================  ==========================  ===============================  ==========

All of them also delete conditionally (``delete(key, if_version=...)``).

Any other filesystem raises :class:`~eleanor_cloud.errors.NotSupported` when opened.
``unsafe_unconditional=True`` opens it anyway with best-effort, *non-atomic* checks:
correct for one writer at a time, UNSAFE with two (both can win a create; a
compare-and-swap can lose an update). Such a backend warns with
:class:`UnsafeBackendWarning`, says ``UNSAFE`` in its description and refuses a
conditional delete (``NotSupported``): nothing needs one, so it is not emulated too.

The policy (envelopes, reconciliation) stays in :class:`StateStore`; this package only
maps the four backend operations onto each filesystem. Modules:

- ``_backend``: :class:`FsspecBackend`, key checks, the choice of a filesystem backend.
- ``_url``: :func:`from_url`, opening a filesystem from a URL and storage options.
- ``_bucket``: what the bucketed object stores (s3fs, gcsfs, adlfs) share.
- ``_s3fs``, ``_gcsfs``, ``_adlfs``, ``_local``, ``_memory``, ``_unsafe``: one backend
  each, imported only when a filesystem of its kind is opened.
"""

from __future__ import annotations

from eleanor_cloud.backends.fsspec._backend import FsspecBackend
from eleanor_cloud.backends.fsspec._unsafe import UnsafeBackendWarning
from eleanor_cloud.backends.fsspec._url import from_url

__all__ = ["FsspecBackend", "UnsafeBackendWarning", "from_url"]
