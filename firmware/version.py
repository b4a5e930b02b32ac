"""The firmware release version: reported by the diagnostics console
(status "firmware"), written into /manifest.json by `panic flash`
(tools/flash.py reads the VERSION line of this file as text) and shown on
the provisioning label.

Stays in sync with: tools/flash.py (release_version), pyproject.toml
(the package version is the same number).
"""

VERSION = "0.1.0"
