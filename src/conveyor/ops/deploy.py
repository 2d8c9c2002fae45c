"""deploy: point a kustomize overlay at a new image, the one change a release makes in git.

The deploy workflow pushes ``ghcr.io/OWNER/conveyor:<commit>``, keeps the digest the registry
returned, and runs ``conveyor deploy set-image``; the edited ``kustomization.yaml`` is committed
(by a pull request) and Argo CD syncs the cluster to it, so git records which image runs where.
The overlay pins the digest: the tag is for people, and a re-pushed tag cannot change what runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.errors import ConveyorError

__all__ = ["DeployError", "ImageChange", "set_image", "set_images_entry"]

KUSTOMIZATION = "kustomization.yaml"
# OCI distribution spec: a repository path (optionally behind a registry host[:port]) and a tag.
_IMAGE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class DeployError(ConveyorError):
    """A bad overlay, image or tag; the message names the file or field and what was expected."""


@dataclass(frozen=True)
class ImageChange:
    """What :func:`set_image` did to one overlay."""

    path: Path
    name: str
    image: str
    tag: str
    digest: str
    previous: str | None

    @property
    def reference(self) -> str:
        """``image:tag@digest``, as the rendered Deployment names it."""
        return f"{self.image}:{self.tag}@{self.digest}"

    @property
    def changed(self) -> bool:
        """False when the overlay already pointed at this image, tag and digest."""
        return self.previous != self.reference


def set_images_entry(kustomization: dict[str, Any], *, name: str, image: str, tag: str, digest: str) -> str | None:
    """Point the ``images:`` entry for ``name`` at ``image:tag@digest`` in place; return the old reference.

    Adds the entry when the overlay has none for ``name``. Pure: works on the parsed mapping.
    """
    if not _IMAGE.match(image):
        raise DeployError(f"--image {image!r} is not an image repository such as ghcr.io/owner/conveyor (lowercase)")
    if not _TAG.match(tag):
        raise DeployError(f"--tag {tag!r} is not an image tag (letters, digits, '_', '.', '-'; at most 128)")
    if not _DIGEST.match(digest):
        raise DeployError(f"--digest {digest!r} is not an image digest (sha256: and 64 lowercase hex digits)")
    images = kustomization.setdefault("images", [])
    if not isinstance(images, list):
        raise DeployError(
            f"images: expected a list of {{name, newName, newTag}} entries, found {type(images).__name__}"
        )
    entry = next((e for e in images if isinstance(e, dict) and e.get("name") == name), None)
    if entry is None:
        entry = {"name": name}
        images.append(entry)
    previous = _reference(entry)
    entry["newName"], entry["newTag"], entry["digest"] = image, tag, digest
    return previous


def _reference(entry: dict[str, Any]) -> str | None:
    if not {"newName", "newTag"} <= entry.keys():
        return None
    return f"{entry['newName']}:{entry['newTag']}" + (f"@{entry['digest']}" if "digest" in entry else "")


def set_image(overlay: Path, *, name: str, image: str, tag: str, digest: str) -> ImageChange:
    """Edit ``overlay/kustomization.yaml`` so the container ``name`` runs ``image:tag@digest``.

    The file's leading comment block is kept; the rest is rewritten by PyYAML in key order.
    """
    path = overlay / KUSTOMIZATION
    if not path.is_file():
        raise DeployError(
            f"{path}: no such file; --overlay must be a kustomize directory such as deploy/overlays/staging"
        )
    text = path.read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or document.get("kind", "Kustomization") != "Kustomization":
        raise DeployError(f"{path}: expected a kustomize Kustomization mapping")
    previous = set_images_entry(document, name=name, image=image, tag=tag, digest=digest)
    header = "".join(text.splitlines(keepends=True)[: _header_length(text)])
    path.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return ImageChange(path, name, image, tag, digest, previous)


def _header_length(text: str) -> int:
    lines = text.splitlines()
    return next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
