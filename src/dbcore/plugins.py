"""Plugin schemas: packages that bring their own tables and alembic revisions.

A package registers a :class:`Plugin` under the ``dbcore.plugins`` entry point group::

    # pyproject.toml of the package
    [project.entry-points."dbcore.plugins"]
    notes = "dbcore_notes:plugin"

    # dbcore_notes/__init__.py
    plugin = dbcore.Plugin(name="notes", migrations=Path(__file__).parent / "migrations",
                           models=("dbcore_notes.models",))

``dbcore migrate``, ``dbcore init`` and ``DatabaseAdapter.init()`` then migrate dbcore
and every registered plugin, each plugin on its own alembic branch (its first
revision has ``branch_labels = ("notes",)`` and ``depends_on`` the dbcore revision it
builds on), and seed the plugin's models. See docs/migrations.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from dbcore.errors import ConfigurationError

__all__ = ["ENTRY_POINT_GROUP", "Plugin", "registered_plugins"]

#: The entry point group a package registers its :class:`Plugin` under.
ENTRY_POINT_GROUP = "dbcore.plugins"

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class Plugin:
    """A package's schema: its name (the alembic branch label), its revisions and its model modules.

    ``migrations`` is the folder of the plugin's alembic revision files. ``models``
    names the modules holding its models, on a base of their own from
    :func:`dbcore.make_base` (never ``dbcore.Base``: dbcore's own drift checks stay
    exact); they are imported before migrating and seeding.
    """

    name: str
    migrations: Path
    models: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name) or self.name == "dbcore":
            raise ConfigurationError(
                f"Plugin name={self.name!r} must be lower-case letters, digits and '_', starting with a letter "
                "(it is the alembic branch label), and not 'dbcore'"
            )
        if not isinstance(self.migrations, (str, Path)):
            raise ConfigurationError(
                f"Plugin {self.name!r}: migrations must be a folder path, not {type(self.migrations).__name__}"
            )
        folder = Path(self.migrations).resolve()
        if not folder.is_dir():
            raise ConfigurationError(f"Plugin {self.name!r}: its migrations folder {folder} does not exist")
        object.__setattr__(self, "migrations", folder)
        models = (self.models,) if isinstance(self.models, str) else self.models
        if not isinstance(models, (tuple, list)) or not all(isinstance(m, str) and m for m in models):
            raise ConfigurationError(f"Plugin {self.name!r}: models must be module names, not {self.models!r}")
        object.__setattr__(self, "models", tuple(models))


def registered_plugins() -> tuple[Plugin, ...]:
    """The plugins installed packages register under ``dbcore.plugins``, by name.

    Read afresh on each call (a few milliseconds), so installing or removing a
    package takes effect in the next migration. An entry point that fails to load,
    is not a :class:`Plugin` (or a function returning one), or whose name differs
    from its plugin's raises :class:`ConfigurationError` naming it.
    """
    found: dict[str, Plugin] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"the dbcore plugin {point.name!r} ({point.value})"
        try:
            value = point.load()
            plugin = value() if callable(value) and not isinstance(value, Plugin) else value
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin's code is reported in one line
            raise ConfigurationError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
        if not isinstance(plugin, Plugin):
            raise ConfigurationError(f"{where} is a {type(plugin).__name__}, not a dbcore.Plugin")
        if plugin.name != point.name:
            raise ConfigurationError(f"{where} holds the plugin {plugin.name!r}; register it under that name")
        if plugin.name in found:
            raise ConfigurationError(f"{where}: two installed packages register a plugin named {plugin.name!r}")
        found[plugin.name] = plugin
    return tuple(found[name] for name in sorted(found))
