"""deploy: point a kustomize overlay at a new image, the one change a release makes in git.

The deploy workflow pushes ``ghcr.io/OWNER/conveyor:<commit>`` and then runs
``conveyor deploy set-image``; the edited ``kustomization.yaml`` is committed (by a pull request)
and Argo CD syncs the cluster to it, so git records which image runs where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor.errors import ConveyorError

KUSTOMIZATION = "kustomization.yaml"
# OCI distribution spec: a repository path (optionally behind a registry host[:port]) and a tag.
_IMAGE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class DeployError(ConveyorError):
    """A bad overlay, image or tag; the message names the file or field and what was expected."""


@dataclass(frozen=True)
class ImageChange:
    """What :func:`set_image` did to one overlay."""

    path: Path
    name: str
    image: str
    tag: str
    previous: str | None

    @property
    def changed(self) -> bool:
        """False when the overlay already pointed at this image and tag."""
        return self.previous != f"{self.image}:{self.tag}"


def set_images_entry(kustomization: dict[str, Any], *, name: str, image: str, tag: str) -> str | None:
    """Point the ``images:`` entry for ``name`` at ``image:tag`` in place; return the old ``image:tag``.

    Adds the entry when the overlay has none for ``name``. Pure: works on the parsed mapping.
    """
    if not _IMAGE.match(image):
        raise DeployError(f"--image {image!r} is not an image repository such as ghcr.io/owner/conveyor (lowercase)")
    if not _TAG.match(tag):
        raise DeployError(f"--tag {tag!r} is not an image tag (letters, digits, '_', '.', '-'; at most 128)")
    images = kustomization.setdefault("images", [])
    if not isinstance(images, list):
        raise DeployError(
            f"images: expected a list of {{name, newName, newTag}} entries, found {type(images).__name__}"
        )
    entry = next((e for e in images if isinstance(e, dict) and e.get("name") == name), None)
    if entry is None:
        entry = {"name": name}
        images.append(entry)
    previous = f"{entry['newName']}:{entry['newTag']}" if "newName" in entry and "newTag" in entry else None
    entry.pop("digest", None)  # a digest would win over the tag we are setting
    entry["newName"], entry["newTag"] = image, tag
    return previous


def set_image(overlay: Path, *, name: str, image: str, tag: str) -> ImageChange:
    """Edit ``overlay/kustomization.yaml`` so the container ``name`` runs ``image:tag``.

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
    previous = set_images_entry(document, name=name, image=image, tag=tag)
    header = "".join(text.splitlines(keepends=True)[: _header_length(text)])
    path.write_text(header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return ImageChange(path, name, image, tag, previous)


def _header_length(text: str) -> int:
    lines = text.splitlines()
    return next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
