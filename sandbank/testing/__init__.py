"""Test support for sandbank: real services (S3, GCS, Azure Blob, Temporal) as subprocesses.

:mod:`sandbank.testing.services` starts and stops them; :mod:`sandbank.testing.fixtures` wraps
them as session-scoped pytest fixtures. Nothing here is imported by sandbank itself.
"""

from __future__ import annotations
