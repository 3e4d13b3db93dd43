"""The one place that imports the OpenAI Agents SDK, so a missing SDK gives an install hint.

``sandbank/agents/__init__.py`` imports it, so it runs before any module that needs the SDK.
"""

from __future__ import annotations

from sandbank.errors import ProviderUnavailable

__all__ = ["INSTALL_HINT"]

INSTALL_HINT = "pip install 'sandbank[agents]'"

try:
    import agents.sandbox  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the SDK
    raise ProviderUnavailable(
        f"sandbank.agents needs the OpenAI Agents SDK (openai-agents), which is not "
        f"installed ({exc}); install it with `{INSTALL_HINT}`",
        retryable=False,
    ) from exc
