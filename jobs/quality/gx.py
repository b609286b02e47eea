"""Great Expectations imported lazily and quietly, and the Data Docs index builder facelake uses."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("facelake.quality")


def import_gx():  # -> the great_expectations module
    """Import GX (it takes seconds, so only when a suite runs) and keep its logging quiet."""
    level = logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR
    logging.getLogger("great_expectations").setLevel(level)  # before the import: it logs while importing
    import great_expectations as gx

    # ... and sets INFO on one of its own loggers at import time.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(level)
    return gx


@contextmanager
def quiet_gx() -> Iterator[None]:
    """Silence GX's Python warnings while a suite runs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="great_expectations")
        warnings.filterwarnings("ignore", message=".*great_expectations.*")
        yield


class KeepingSiteIndexBuilder:
    """GX's default Data Docs index page, built without deleting pages of other contexts' validations.

    GX's default index builder deletes every page the (ephemeral) context did not produce, i.e.
    earlier runs' pages that dq_results rows link to. GX instantiates the index builder from a
    module and class name (``site_index_builder`` in the site config); this class wraps the default
    one instead of subclassing it, so that defining it does not import GX.
    """

    def __init__(self, runtime_environment: dict[str, Any], **config: Any) -> None:
        # GX passes its whole runtime environment when __init__ asks for it by this name; the
        # default builder gets it the way GX itself would instantiate it.
        from great_expectations.data_context.util import instantiate_class_from_config

        self._default = instantiate_class_from_config(
            config={
                **config,
                "module_name": "great_expectations.render.renderer.site_builder",
                "class_name": "DefaultSiteIndexBuilder",
            },
            runtime_environment=runtime_environment,
        )

    def build(self, skip_and_clean_missing: bool = False, build_index: bool = True):
        return self._default.build(skip_and_clean_missing=False, build_index=build_index)
