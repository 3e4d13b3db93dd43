"""The portable, provider-neutral description of a workspace."""

from sandbank.manifest.model import Image, Manifest, Resources

__all__ = ["Image", "Manifest", "Resources"]
