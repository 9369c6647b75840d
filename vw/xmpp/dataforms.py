"""XEP-0004 data forms as plain data: parse from and build to domish Elements."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

DATA_NS = "jabber:x:data"

FORM_TYPES = frozenset({"form", "submit", "cancel", "result"})
FIELD_TYPES = frozenset({
    "boolean", "fixed", "hidden", "jid-multi", "jid-single", "list-multi", "list-single",
    "text-multi", "text-private", "text-single",
})
#: Field types that may carry more than one <value/> (XEP-0004 §3.2).
MULTI_VALUE_TYPES = frozenset({"list-multi", "jid-multi", "text-multi", "hidden"})
LIST_TYPES = frozenset({"list-single", "list-multi"})
TRUE_VALUES = frozenset({"1", "true"})
FALSE_VALUES = frozenset({"0", "false"})


def _text(element: Element) -> str:
    """The character data directly inside ``element``."""
    return "".join(child for child in element.children if isinstance(child, str))


def parse_bool(value: str) -> bool:
    """An XEP-0004 boolean ("0", "1", "false", "true"); ValueError otherwise."""
    lowered = value.strip().lower()
    if lowered in TRUE_VALUES:
        return True
    if lowered in FALSE_VALUES:
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass
class Option:
    """One choice of a list-single or list-multi field."""

    value: str
    label: str | None = None


@dataclass
class Field:
    """One form field. ``type`` None means "not stated" (text-single, or inferred in submits)."""

    var: str | None = None
    type: str | None = None
    values: list[str] = field(default_factory=list)
    label: str | None = None
    options: list[Option] = field(default_factory=list)
    desc: str | None = None
    required: bool = False

    @property
    def value(self) -> str | None:
        """The first value, or None when the field has none."""
        return self.values[0] if self.values else None

    def bool_value(self) -> bool:
        """The value as a boolean (no value is false, XEP-0004 §3.3); ValueError if malformed."""
        return parse_bool(self.values[0]) if self.values else False

    @classmethod
    def fromElement(cls, element: Element) -> Field:
        """Parse a <field/>; ValueError on malformed input."""
        declared = element.getAttribute("type")
        ftype = None if declared is None else (declared if declared in FIELD_TYPES
                                               else "text-single")
        result = cls(var=element.getAttribute("var"), type=ftype,
                     label=element.getAttribute("label"))
        for child in element.elements():
            if child.uri != DATA_NS:
                continue
            if child.name == "value":
                result.values.append(_text(child))
            elif child.name == "option":
                result.options.append(_parse_option(child))
            elif child.name == "desc":
                result.desc = _text(child)
            elif child.name == "required":
                result.required = True
        result.validate()
        return result

    def validate(self) -> None:
        """Check the XEP-0004 rules on this field; ValueError when broken."""
        if self.var is None and self.type != "fixed":
            raise ValueError("a field without 'var' must be of type fixed")
        if self.type is not None and self.type not in MULTI_VALUE_TYPES and len(self.values) > 1:
            raise ValueError(f"field {self.var!r} of type {self.type} has several values")
        if self.options and self.type is not None and self.type not in LIST_TYPES:
            raise ValueError(f"field {self.var!r} of type {self.type} has options")
        if self.type == "boolean":
            for value in self.values:
                parse_bool(value)
        elif self.type in ("jid-single", "jid-multi"):
            for value in self.values:
                _check_jid(value)

    def toElement(self) -> Element:
        """This field as a <field/> element."""
        element = Element((DATA_NS, "field"), defaultUri=DATA_NS)
        if self.var is not None:
            element["var"] = self.var
        if self.type is not None:
            element["type"] = self.type
        if self.label is not None:
            element["label"] = self.label
        if self.desc is not None:
            element.addElement("desc", content=self.desc)
        if self.required:
            element.addElement("required")
        for value in self.values:
            _add_value(element, value)
        for option in self.options:
            opt = element.addElement("option")
            if option.label is not None:
                opt["label"] = option.label
            _add_value(opt, option.value)
        return element


def _add_value(parent: Element, value: str) -> None:
    child = parent.addElement("value")
    if value:
        child.addContent(value)


def _check_jid(value: str) -> None:
    try:
        JID(value)
    except Exception as e:  # InvalidFormat, UnicodeError, ...: all mean "not a JID"
        raise ValueError(f"not a valid JID: {value!r}") from e


def _parse_option(element: Element) -> Option:
    values = [_text(c) for c in element.elements() if c.uri == DATA_NS and c.name == "value"]
    if len(values) != 1:
        raise ValueError("an option must hold exactly one value")
    return Option(value=values[0], label=element.getAttribute("label"))


def _parse_fields(element: Element) -> list[Field]:
    return [Field.fromElement(c) for c in element.elements()
            if c.uri == DATA_NS and c.name == "field"]


@dataclass
class Form:
    """A data form (``<x xmlns="jabber:x:data"/>``)."""

    type: str = "form"
    fields: list[Field] = field(default_factory=list)
    title: str | None = None
    instructions: list[str] = field(default_factory=list)
    #: Table header and rows of a multi-item result (XEP-0004 §3.4).
    reported: list[Field] | None = None
    items: list[list[Field]] = field(default_factory=list)

    def get(self, var: str) -> Field | None:
        """The field named ``var``, or None."""
        for candidate in self.fields:
            if candidate.var == var:
                return candidate
        return None

    def value(self, var: str, default: str | None = None) -> str | None:
        """The first value of field ``var``, or ``default``."""
        found = self.get(var)
        return default if found is None or not found.values else found.values[0]

    @property
    def form_type(self) -> str | None:
        """The value of the hidden FORM_TYPE field (XEP-0068), if any."""
        return self.value("FORM_TYPE")

    @classmethod
    def fromElement(cls, element: Element) -> Form:
        """Parse ``<x xmlns="jabber:x:data"/>``; ValueError on malformed input."""
        if element.uri != DATA_NS or element.name != "x":
            raise ValueError("not a jabber:x:data form")
        ftype = element.getAttribute("type")
        if ftype not in FORM_TYPES:
            raise ValueError(f"bad form type {ftype!r}")
        form = cls(type=ftype)
        for child in element.elements():
            if child.uri != DATA_NS:
                continue
            if child.name == "title":
                form.title = _text(child)
            elif child.name == "instructions":
                form.instructions.append(_text(child))
            elif child.name == "field":
                form.fields.append(Field.fromElement(child))
            elif child.name == "reported":
                if form.reported is not None:
                    raise ValueError("more than one <reported/>")
                form.reported = _parse_fields(child)
            elif child.name == "item":
                form.items.append(_parse_fields(child))
        form.validate()
        return form

    def validate(self) -> None:
        """Check form-level rules: unique field names; ValueError when broken."""
        if self.type not in FORM_TYPES:
            raise ValueError(f"bad form type {self.type!r}")
        names = [f.var for f in self.fields if f.var is not None]
        if len(names) != len(set(names)):
            raise ValueError("duplicate field names")

    def toElement(self) -> Element:
        """This form as ``<x xmlns="jabber:x:data"/>``."""
        element = Element((DATA_NS, "x"), defaultUri=DATA_NS)
        element["type"] = self.type
        if self.title is not None:
            element.addElement("title", content=self.title)
        for line in self.instructions:
            element.addElement("instructions", content=line)
        for item in self.fields:
            element.addChild(item.toElement())
        if self.reported is not None:
            reported = element.addElement("reported")
            for item in self.reported:
                reported.addChild(item.toElement())
        for row in self.items:
            row_element = element.addElement("item")
            for item in row:
                row_element.addChild(item.toElement())
        return element
