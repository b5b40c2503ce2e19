"""Dagster ``Config`` classes derived from the Dagster-free dataclasses in ``lib/`` (one source for
every hyper-parameter: its name, type and default live in the dataclass only)."""

import dataclasses

import dagster as dg
import pydantic


def config_from_dataclass(
    name: str, dc: type, *, exclude: tuple[str, ...] = (), doc: str | None = None
) -> type[dg.Config]:
    """A ``dg.Config`` subclass named ``name`` with one field per field of the dataclass ``dc`` (same
    name, type and default), less ``exclude``; ``to_dataclass()`` on an instance rebuilds ``dc``
    (excluded fields at their dataclass defaults).

    Raises:
        TypeError: ``dc`` is not a dataclass, or a field to keep has no default (a Launchpad config
            must be runnable as is).
    """
    if not dataclasses.is_dataclass(dc):
        raise TypeError(f"{dc!r} is not a dataclass")
    fields = {}
    for f in dataclasses.fields(dc):
        if f.name in exclude:
            continue
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{dc.__name__}.{f.name} has no default; a Config field needs one")
        fields[f.name] = (f.type if isinstance(f.type, type) else type(f.default), f.default)

    def to_dataclass(self):
        return dc(**{k: getattr(self, k) for k in fields})

    cls = pydantic.create_model(
        name, __base__=dg.Config, __doc__=doc or f"Fields and defaults of ``{dc.__module__}.{dc.__name__}``.", **fields
    )
    cls.to_dataclass = to_dataclass
    return cls
