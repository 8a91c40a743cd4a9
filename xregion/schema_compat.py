"""BACKWARD compatibility of JSON Schemas: would a change break a v1 consumer?

:func:`breaking_changes` compares the committed schema (``old``) with the one the models
generate now (``new``) and lists every way in which ``new`` breaks a party written against
``old``:

* a property removed (a rename is a removal) or newly required;
* a type no longer accepted, a nullable value no longer nullable, an ``anyOf`` alternative
  removed;
* an ``enum`` value removed, a ``const`` changed or added, a ``pattern`` or ``format`` added
  or changed (any change counts as narrowing);
* a lower bound raised or an upper bound lowered (``minLength``/``maxLength``,
  ``minimum``/``maximum``/``exclusive*``, ``minItems``/``maxItems``, ...);
* ``additionalProperties`` closed, ``uniqueItems`` switched on, ``multipleOf`` tightened;
* any other validation keyword changed (conservatively: the checker cannot prove it safe).

Widening is not breaking: a new optional property (also on an open object), an added enum
value or alternative, a relaxed limit, a removed pattern. Annotations (``title``,
``description``, ``default``, ``examples``, ``x-*``, ...) never are. Local references
(``#/$defs/...``) are resolved on both sides, so renaming a ``$defs`` entry changes nothing.

:func:`compare_documents` does the same for a whole ``schemas/v<N>/`` tree, where a removed
``data/<family>.<event>.json`` means an event type disappeared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Schema = Any
"""A JSON Schema node: a mapping, or a boolean schema."""

ANNOTATIONS = frozenset(
    {
        "$anchor",
        "$comment",
        "$defs",
        "$dynamicAnchor",
        "$id",
        "$schema",
        "$vocabulary",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "default",
        "definitions",
        "deprecated",
        "description",
        "examples",
        "readOnly",
        "title",
        "writeOnly",
    }
)
"""Keywords that do not affect validation."""

HANDLED = frozenset(
    {
        "$ref",
        "additionalProperties",
        "anyOf",
        "const",
        "enum",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "format",
        "items",
        "maxItems",
        "maxLength",
        "maxProperties",
        "maximum",
        "minItems",
        "minLength",
        "minProperties",
        "minimum",
        "multipleOf",
        "oneOf",
        "pattern",
        "properties",
        "required",
        "type",
        "uniqueItems",
    }
)

COUNT_BOUNDS = (
    ("minLength", "maxLength", "length"),
    ("minItems", "maxItems", "number of items"),
    ("minProperties", "maxProperties", "number of properties"),
)


@dataclass(frozen=True)
class Incompatibility:
    """One breaking change: in ``file``, at ``field`` (dotted path, ``[]`` for items)."""

    file: str
    field: str
    kind: str
    message: str

    @property
    def label(self) -> str:
        """``lead.submitted`` for ``data/lead.submitted.json``; else the file's stem."""
        name = self.file.removeprefix("data/")
        return name.removesuffix(".json") or "(schema)"

    def __str__(self) -> str:
        return f"{self.label}: {self.message}"


def breaking_changes(old: Schema, new: Schema, path: str = "", *, file: str = "") -> list[Incompatibility]:
    """Every change from ``old`` to ``new`` that breaks a consumer of ``old``.

    ``path`` prefixes the reported field paths (e.g. ``"data"``); ``file`` names the schema
    in the results.
    """
    walker = _Walker(old, new, file)
    walker.compare(old, new, path, frozenset())
    return walker.found


def compare_documents(
    old: Mapping[str, Schema], new: Mapping[str, Schema], *, skip: Iterable[str] = ("index.json",)
) -> list[Incompatibility]:
    """Breaking changes between two schema trees keyed by relative path (``data/x.y.json``).

    A file of ``old`` missing from ``new`` is breaking (for ``data/`` files: the event type
    was removed); files only in ``new`` are additions. Files in ``skip`` are not schemas.
    """
    skipped = set(skip)
    found: list[Incompatibility] = []
    for name in sorted(old):
        if name in skipped:
            continue
        if name not in new:
            if name.startswith("data/"):
                event = name.removeprefix("data/").removesuffix(".json")
                found.append(Incompatibility(name, "", "event_removed", f"event type {event!r} was removed"))
            else:
                found.append(Incompatibility(name, "", "file_removed", f"schema {name} was removed"))
            continue
        found.extend(breaking_changes(old[name], new[name], file=name))
    return found


# --- implementation -------------------------------------------------------------------------


def _show(path: str) -> str:
    return path or "(root)"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _canon(value: Any) -> str:
    """Hashable, order-independent form of a JSON value (``1`` and ``1.0`` are equal)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _covers(types: frozenset[str] | None, json_type: str) -> bool:
    """Whether a schema accepting ``types`` (``None``: any) accepts values of ``json_type``."""
    if types is None:
        return True
    return json_type in types or (json_type == "integer" and "number" in types)


def _describe(types: frozenset[str] | None) -> str:
    return "any type" if types is None else " or ".join(sorted(types)) or "nothing"


class _Walker:
    """Recursive comparison of one old/new schema pair, with ``$ref`` resolution per side."""

    def __init__(self, old_root: Schema, new_root: Schema, file: str) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.file = file
        self.found: list[Incompatibility] = []

    def report(self, path: str, kind: str, message: str) -> None:
        self.found.append(Incompatibility(self.file, path, kind, message))

    # --- resolution -------------------------------------------------------------------

    @staticmethod
    def _pointer(root: Schema, ref: str) -> Schema | None:
        if not ref.startswith("#"):
            return None
        node = root
        for raw in ref[1:].split("/")[1:]:
            token = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node

    def resolve(self, node: Schema, root: Schema) -> tuple[Schema, tuple[str, ...]]:
        """``node`` with local ``$ref`` and one-element ``allOf`` merged in; the refs followed."""
        refs: list[str] = []
        while isinstance(node, Mapping):
            if "$ref" in node and isinstance(node["$ref"], str):
                ref = node["$ref"]
                target = self._pointer(root, ref)
                if target is None or ref in refs:
                    break  # remote or circular: compared as an opaque keyword
                refs.append(ref)
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                node = {**target, **siblings} if isinstance(target, Mapping) else target
                if isinstance(node, bool) and siblings:
                    break
                continue
            all_of = node.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1:
                rest = {k: v for k, v in node.items() if k != "allOf"}
                inner = all_of[0]
                node = {**inner, **rest} if isinstance(inner, Mapping) else inner
                continue
            break
        return node, tuple(refs)

    def branches(self, node: Schema, root: Schema) -> list[tuple[Schema, tuple[str, ...]]]:
        """Alternatives of ``node``: the flattened ``anyOf``/``oneOf`` branches, or ``node``."""
        node, refs = self.resolve(node, root)
        if isinstance(node, Mapping):
            for keyword in ("anyOf", "oneOf"):
                alternatives = node.get(keyword)
                if isinstance(alternatives, list) and alternatives:
                    rest = {
                        k: v
                        for k, v in node.items()
                        if k != keyword and k not in ANNOTATIONS and not k.startswith("x-")
                    }
                    found: list[tuple[Schema, tuple[str, ...]]] = []
                    for alternative in alternatives:
                        merged = {**alternative, **rest} if rest and isinstance(alternative, Mapping) else alternative
                        found.extend(self.branches(merged, root))
                    return found
        if node is False:
            return []
        return [(node, refs)]

    @staticmethod
    def types(node: Schema) -> frozenset[str] | None:
        """JSON types a single (non-union) node accepts; ``None`` for any."""
        if node is True or not isinstance(node, Mapping):
            return None if node is not False else frozenset()
        declared = node.get("type")
        result: frozenset[str] | None = None
        if isinstance(declared, str):
            result = frozenset({declared})
        elif isinstance(declared, list):
            result = frozenset(t for t in declared if isinstance(t, str))
        values = _Walker.values(node)
        if values is not None:
            from_values = frozenset(_json_type(json.loads(v)) for v in values)
            result = from_values if result is None else frozenset(t for t in from_values if _covers(result, t))
        return result

    @staticmethod
    def values(node: Schema) -> frozenset[str] | None:
        """Canonical forms of the values allowed by ``enum``/``const``; ``None``: unrestricted."""
        if not isinstance(node, Mapping):
            return None
        allowed: frozenset[str] | None = None
        if isinstance(node.get("enum"), list):
            allowed = frozenset(_canon(v) for v in node["enum"])
        if "const" in node:
            const = frozenset({_canon(node["const"])})
            allowed = const if allowed is None else allowed & const
        return allowed

    # --- comparison ---------------------------------------------------------------------

    def compare(self, old: Schema, new: Schema, path: str, seen: frozenset[tuple[str, str]]) -> None:
        """Report what ``new`` rejects of what ``old`` accepted, at ``path``."""
        old_branches = self.branches(old, self.old_root)
        new_branches = self.branches(new, self.new_root)
        if not old_branches:
            return  # old accepted nothing: nothing to break
        if not new_branches:
            self.report(path, "rejected", f"field {_show(path)!r} no longer accepts any value")
            return

        old_types = self._union_types(old_branches)
        new_types = self._union_types(new_branches)
        removed_types: frozenset[str] = frozenset()
        if old_types is None:
            if new_types is not None:
                self.report(
                    path,
                    "type_narrowed",
                    f"field {_show(path)!r} accepted any type, now only {_describe(new_types)}",
                )
        else:
            removed_types = frozenset(t for t in old_types if not _covers(new_types, t))
            if "null" in removed_types:
                self.report(path, "nullable_removed", f"field {_show(path)!r} is no longer nullable")
            narrowed = removed_types - {"null"}
            if narrowed:
                self.report(
                    path,
                    "type_narrowed",
                    f"field {_show(path)!r} no longer accepts {_describe(narrowed)} "
                    f"(was {_describe(old_types)}, now {_describe(new_types)})",
                )

        null = frozenset({"null"})
        new_values = [b for b in new_branches if self.types(b[0]) != null]
        old_values = [b for b in old_branches if self.types(b[0]) != null]
        names = [self._key(node, refs) for node, refs in old_values]
        for i, (branch, refs) in enumerate(old_values):
            siblings = frozenset(n for j, n in enumerate(names) if j != i and n)
            self._compare_branch(branch, refs, new_values, self.types(branch), removed_types, path, seen, siblings)

    def _union_types(self, branches: list[tuple[Schema, tuple[str, ...]]]) -> frozenset[str] | None:
        union: set[str] = set()
        for node, _ in branches:
            types = self.types(node)
            if types is None:
                return None
            union |= types
        return frozenset(union)

    def _compare_branch(
        self,
        old: Schema,
        old_refs: tuple[str, ...],
        candidates: list[tuple[Schema, tuple[str, ...]]],
        old_types: frozenset[str] | None,
        removed_types: frozenset[str],
        path: str,
        seen: frozenset[tuple[str, str]],
        siblings: frozenset[str],
    ) -> None:
        """Compare one old alternative with the new alternative that takes its place.

        ``siblings`` are the names of the other old alternatives: a new alternative named
        like one of them is that one's successor, not this one's.
        """
        if old_types is not None and old_types <= removed_types:
            return  # every type of this alternative was reported as removed already
        matching = [
            (node, refs)
            for node, refs in candidates
            if old_types is None or self.types(node) is None or any(_covers(self.types(node), t) for t in old_types)
        ]
        if len(matching) > 1 or siblings:
            # fine if some new alternative accepts everything this one accepted
            for node, refs in matching:
                if not self._trial(old, node, path, seen, old_refs, refs):
                    return
        name = self._key(old, old_refs)
        same_name = [m for m in matching if name and self._key(*m) == name]
        if len(same_name) == 1:
            successor = same_name[0]
        elif len(matching) == 1 and self._key(*matching[0]) not in siblings:
            successor = matching[0]  # the only candidate (possibly renamed)
        else:
            self.report(
                path,
                "branch_removed",
                f"field {_show(path)!r}: alternative {self._name(old, old_refs)} was removed",
            )
            return
        node, refs = successor
        self._compare_nodes(old, node, path, seen, old_refs, refs)

    def _trial(
        self,
        old: Schema,
        new: Schema,
        path: str,
        seen: frozenset[tuple[str, str]],
        old_refs: tuple[str, ...],
        new_refs: tuple[str, ...],
    ) -> list[Incompatibility]:
        probe = _Walker(self.old_root, self.new_root, self.file)
        probe._compare_nodes(old, new, path, seen, old_refs, new_refs)
        return probe.found

    @staticmethod
    def _ref_name(refs: tuple[str, ...]) -> str:
        return refs[-1].rsplit("/", 1)[-1] if refs else ""

    def _key(self, node: Schema, refs: tuple[str, ...]) -> str:
        """Name of an alternative: its ``$defs`` name, else its title, else ``""``."""
        title = node.get("title") if isinstance(node, Mapping) else None
        return self._ref_name(refs) or (title if isinstance(title, str) else "")

    def _name(self, node: Schema, refs: tuple[str, ...]) -> str:
        name = self._key(node, refs)
        return repr(name) if name else f"of type {_describe(self.types(node))}"

    def _compare_nodes(
        self,
        old: Schema,
        new: Schema,
        path: str,
        seen: frozenset[tuple[str, str]],
        old_refs: tuple[str, ...],
        new_refs: tuple[str, ...],
    ) -> None:
        """Compare two single (non-union, resolved) nodes of compatible types."""
        if old_refs and new_refs:
            pair = (old_refs[-1], new_refs[-1])
            if pair in seen:
                return  # recursive definition: compared once already up the path
            seen = seen | {pair}
        if not isinstance(old, Mapping):
            old = {} if old is True else {"not": {}}
        if not isinstance(new, Mapping):
            new = {} if new is True else {"not": {}}

        if "$ref" in new and old.get("$ref") != new["$ref"]:  # remote or circular: opaque
            self.report(path, "ref_changed", f"field {_show(path)!r}: $ref changed to {new['$ref']}")
        self._values(old, new, path)
        self._strings(old, new, path)
        self._numbers(old, new, path)
        for low, high, what in COUNT_BOUNDS:
            self._bounds(old, new, path, low, high, what)
        if new.get("uniqueItems") is True and old.get("uniqueItems") is not True:
            self.report(path, "unique_items_added", f"field {_show(path)!r} now requires unique items")
        self._objects(old, new, path, seen)
        self._items(old, new, path, seen)
        self._other_keywords(old, new, path)

    def _values(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        old_values = self.values(old)
        new_values = self.values(new)
        if new_values is None:
            return
        if old_values is None:
            kind = "const_added" if "const" in new else "enum_restricted"
            shown = ", ".join(sorted(new_values))
            self.report(path, kind, f"field {_show(path)!r} is now restricted to {shown}")
            return
        removed = old_values - new_values
        if not removed:
            return
        if "const" in old and "const" in new:
            self.report(
                path,
                "const_changed",
                f"field {_show(path)!r}: const changed from {_canon(old['const'])} to {_canon(new['const'])}",
            )
            return
        for value in sorted(removed):
            self.report(path, "enum_value_removed", f"field {_show(path)!r}: enum value {value} was removed")

    def _strings(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        for keyword, kind in (("pattern", "pattern_changed"), ("format", "format_changed")):
            if keyword in new and old.get(keyword) != new[keyword]:
                before = f"{old[keyword]!r}" if keyword in old else "none"
                self.report(
                    path,
                    kind,
                    f"field {_show(path)!r}: {keyword} changed from {before} to {new[keyword]!r}",
                )

    def _bounds(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        path: str,
        low: str,
        high: str,
        what: str,
    ) -> None:
        old_low, new_low = old.get(low, 0), new.get(low, 0)
        if new_low > old_low:
            self.report(
                path,
                "min_raised",
                f"field {_show(path)!r}: {low} raised from {old_low} to {new_low} ({what})",
            )
        old_high, new_high = old.get(high, math.inf), new.get(high, math.inf)
        if new_high < old_high:
            before = "none" if old_high == math.inf else old_high
            self.report(
                path,
                "max_lowered",
                f"field {_show(path)!r}: {high} lowered from {before} to {new_high} ({what})",
            )

    @staticmethod
    def _lower(node: Mapping[str, Any], integral: bool) -> tuple[float, bool]:
        """Effective lower bound (value, exclusive); for integers exclusive ``n`` is ``n + 1``."""
        bound: tuple[float, bool] = (-math.inf, False)
        if isinstance(node.get("minimum"), int | float) and not isinstance(node["minimum"], bool):
            bound = max(bound, (node["minimum"], False))
        excl = node.get("exclusiveMinimum")
        if isinstance(excl, int | float) and not isinstance(excl, bool):
            candidate = (math.floor(excl) + 1, False) if integral else (excl, True)
            bound = max(bound, candidate)
        if integral and bound[0] != -math.inf:
            bound = (math.ceil(bound[0]), False)
        return bound

    @staticmethod
    def _upper(node: Mapping[str, Any], integral: bool) -> tuple[float, bool]:
        """Effective upper bound as ``(-value, exclusive)`` so that larger means tighter."""
        bound: tuple[float, bool] = (-math.inf, False)
        if isinstance(node.get("maximum"), int | float) and not isinstance(node["maximum"], bool):
            bound = max(bound, (-node["maximum"], False))
        excl = node.get("exclusiveMaximum")
        if isinstance(excl, int | float) and not isinstance(excl, bool):
            candidate = (-(math.ceil(excl) - 1), False) if integral else (-excl, True)
            bound = max(bound, candidate)
        if integral and bound[0] != -math.inf:
            bound = (math.ceil(bound[0]), False)
        return bound

    def _numbers(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        integer = frozenset({"integer"})
        integral = self.types(old) == integer and self.types(new) == integer
        old_low, new_low = self._lower(old, integral), self._lower(new, integral)
        if new_low > old_low:
            self.report(
                path,
                "min_raised",
                f"field {_show(path)!r}: lower bound raised from {self._show_low(old_low)} "
                f"to {self._show_low(new_low)}",
            )
        old_high, new_high = self._upper(old, integral), self._upper(new, integral)
        if new_high > old_high:
            self.report(
                path,
                "max_lowered",
                f"field {_show(path)!r}: upper bound lowered from {self._show_high(old_high)} "
                f"to {self._show_high(new_high)}",
            )
        new_step = new.get("multipleOf")
        if isinstance(new_step, int | float) and new_step > 0:
            old_step = old.get("multipleOf")
            ratio = old_step / new_step if isinstance(old_step, int | float) and old_step > 0 else None
            if ratio is None or not math.isclose(ratio, round(ratio)) or round(ratio) < 1:
                self.report(
                    path,
                    "multiple_of_changed",
                    f"field {_show(path)!r}: multipleOf changed from {old_step} to {new_step}",
                )

    @staticmethod
    def _show_low(bound: tuple[float, bool]) -> str:
        value, exclusive = bound
        return "none" if value == -math.inf else f"{'>' if exclusive else '>='} {value}"

    @staticmethod
    def _show_high(bound: tuple[float, bool]) -> str:
        value, exclusive = bound
        return "none" if value == -math.inf else f"{'<' if exclusive else '<='} {-value}"

    def _objects(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        path: str,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        old_props: Mapping[str, Any] = old.get("properties") or {}
        new_props: Mapping[str, Any] = new.get("properties") or {}
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)

        for name, old_prop in old_props.items():
            field = _join(path, name)
            if name not in new_props:
                self.report(field, "removed", f"field {field!r} was removed")
                continue
            self.compare(old_prop, new_props[name], field, seen)

        old_required = set(old.get("required") or ())
        for name in new.get("required") or ():
            if name in old_required:
                continue
            field = _join(path, name)
            if name in old_props:
                self.report(field, "newly_required", f"field {field!r} is now required")
            else:
                self.report(field, "newly_required", f"new required field {field!r}")

        if old_extra is not False:
            if new_extra is False:
                types = self.types(old)
                if types is None or "object" in types:
                    self.report(
                        path,
                        "additional_properties_closed",
                        f"field {_show(path)!r} no longer accepts additional properties",
                    )
            elif new_extra is not True and new_extra != {}:
                self.compare(old_extra, new_extra, _join(path, "*"), seen)

    def _items(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        path: str,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        if "items" not in new:
            return
        self.compare(old.get("items", True), new["items"], f"{path}[]", seen)

    def _other_keywords(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        for keyword in sorted(set(old) | set(new)):
            if keyword in HANDLED or keyword in ANNOTATIONS or keyword.startswith("x-"):
                continue
            if keyword in new and old.get(keyword) != new[keyword]:
                self.report(
                    path,
                    "keyword_changed",
                    f"field {_show(path)!r}: {keyword} changed (not provably compatible)",
                )
