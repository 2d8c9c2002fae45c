"""The service's docs page: Swagger UI over the served OpenAPI document, every asset from the service itself.

BentoML's own page at ``/`` loads Google Tag Manager (``https://www.googletagmanager.com/gtm.js``)
in the browser of whoever opens it. This page uses the Swagger UI files BentoML ships and serves
under :data:`ASSETS` (its ``static_content``), configured inline: no online validator badge
(``validatorUrl: null``), no other host, nothing sent anywhere but to the service.
"""

from __future__ import annotations

import html
import json

__all__ = ["ASSETS", "docs_page"]

# Where BentoML serves the Swagger UI files of its own package (the main service, default index).
ASSETS = "/static_content"


def docs_page(*, title: str, openapi_url: str) -> bytes:
    """The HTML of the page: Swagger UI rendering ``openapi_url``, with assets from :data:`ASSETS` only."""
    config = {
        "url": openapi_url,
        "dom_id": "#swagger-ui",
        "deepLinking": True,
        "validatorUrl": None,
        "tryItOutEnabled": True,
        "displayRequestDuration": True,
    }
    # `</` cannot end the script early: JSON escapes it as `<\/`.
    options = json.dumps(config).replace("</", "<\\/")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{html.escape(title)}</title>
<link rel="icon" type="image/png" href="{ASSETS}/favicon-light-32x32.png">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle(Object.assign({options}, {{presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"}}));
</script>
</body>
</html>
"""
    return page.encode()
