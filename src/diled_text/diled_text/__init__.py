"""diled-text: NOT IMPLEMENTED YET.

This distribution is an installable shell so the four-package layout can be installed and tested.
It registers no modality yet (see docs/architecture.md for how the text modality will fit the core).
"""

__all__: list[str] = []
