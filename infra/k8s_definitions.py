"""The Kubernetes code location as a module attribute: what ``-m pricing_assets.definitions`` loads
with ``PRICING_EXECUTOR=k8s`` (the Helm deployment sets that variable), whatever this process's
environment says. Kept for tools that load a module attribute (``pricing_tests/test_k8s.py``
reconstructs runs from it). Needs the ``k8s`` extra (``dagster-k8s``).
"""

import dataclasses

from pricing_assets.definitions import build_defs
from pricing_assets.settings import load_settings

defs = build_defs(dataclasses.replace(load_settings(), executor="k8s"))
