"""Tests for vw.xmpp.dataforms (XEP-0004)."""

from __future__ import annotations

import pytest
from twisted.words.xish import domish
from twisted.words.xish.domish import Element

from vw.xmpp.dataforms import DATA_NS, Field, Form, Option, parse_bool


def parse(xml: str) -> Element:
    """One element from XML text, parsed like a stream child."""
    found: list[Element] = []
    stream = domish.ExpatElementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse("<stream xmlns='jabber:client'>" + xml)
    assert len(found) == 1
    return found[0]


def x(body: str, form_type: str = "form") -> Element:
    return parse(f"<x xmlns='{DATA_NS}' type='{form_type}'>{body}</x>")


def full_form() -> Form:
    return Form(
        type="form", title="Configure", instructions=["Fill it in", "Then submit"],
        fields=[
            Field("FORM_TYPE", "hidden", ["urn:example:form"]),
            Field(None, "fixed", ["A section"]),
            Field("flag", "boolean", ["1"], label="A flag", desc="Tick it", required=True),
            Field("name", "text-single", ["Alice & Bob <3"]),
            Field("secret", "text-private", [""]),
            Field("lines", "text-multi", ["one", "two"]),
            Field("owner", "jid-single", ["alice@example.com"]),
            Field("admins", "jid-multi", ["a@example.com", "b@example.com/r"]),
            Field("size", "list-single", ["10"],
                  options=[Option("10", "Ten"), Option("none")]),
            Field("roles", "list-multi", ["moderator", "visitor"],
                  options=[Option("moderator"), Option("visitor", "Visitor")]),
            Field("untyped", None, []),
        ])


def test_round_trip_through_xml() -> None:
    form = full_form()
    again = Form.fromElement(parse(form.toElement().toXml()))
    assert again == form


def test_result_with_reported_and_items_round_trips() -> None:
    form = Form(type="result", reported=[Field("jid", "jid-single", label="JID")],
                items=[[Field("jid", None, ["a@example.com"])],
                       [Field("jid", None, ["b@example.com"])]])
    assert Form.fromElement(parse(form.toElement().toXml())) == form


def test_helpers() -> None:
    form = full_form()
    assert form.form_type == "urn:example:form"
    assert form.get("flag").bool_value() is True
    assert form.get("missing") is None
    assert form.value("name") == "Alice & Bob <3"
    assert form.value("untyped", "dflt") == "dflt"
    assert form.get("untyped").value is None
    assert Field("b", "boolean").bool_value() is False


def test_empty_value_element_is_an_empty_string() -> None:
    form = Form.fromElement(x("<field var='s'><value/></field><field var='t'/>", "submit"))
    assert form.get("s").values == [""]
    assert form.get("t").values == []


def test_unknown_field_type_is_text_single() -> None:
    form = Form.fromElement(x("<field var='a' type='colour'><value>red</value></field>"))
    assert form.get("a").type == "text-single"


def test_cancel_form_and_foreign_children_ignored() -> None:
    form = Form.fromElement(x("<other xmlns='urn:x'/><field xmlns='urn:x' var='a'/>", "cancel"))
    assert form.type == "cancel" and form.fields == []


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("0", False),
                                            ("false", False), ("TRUE", True)])
def test_parse_bool(value: str, expected: bool) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize("xml", [
    "<x xmlns='urn:not-data' type='form'/>",
    f"<x xmlns='{DATA_NS}'/>",
    f"<x xmlns='{DATA_NS}' type='bogus'/>",
    f"<y xmlns='{DATA_NS}' type='form'/>",
    f"<x xmlns='{DATA_NS}' type='form'><field type='text-single'/></x>",
    f"<x xmlns='{DATA_NS}' type='form'><field var='b' type='boolean'><value>1</value>"
    "<value>0</value></field></x>",
    f"<x xmlns='{DATA_NS}' type='form'><field var='b' type='boolean'><value>yes</value>"
    "</field></x>",
    f"<x xmlns='{DATA_NS}' type='form'><field var='l' type='list-single'><option/></field></x>",
    f"<x xmlns='{DATA_NS}' type='form'><field var='l' type='list-single'><option>"
    "<value>a</value><value>b</value></option></field></x>",
    f"<x xmlns='{DATA_NS}' type='form'><field var='t' type='text-single'><option>"
    "<value>a</value></option></field></x>",
    f"<x xmlns='{DATA_NS}' type='form'><field var='a'/><field var='a'/></x>",
    f"<x xmlns='{DATA_NS}' type='form'><field var='j' type='jid-single'><value>a b@c</value>"
    "</field></x>",
    f"<x xmlns='{DATA_NS}' type='result'><reported/><reported/></x>",
])
def test_malformed_forms_raise_value_error(xml: str) -> None:
    with pytest.raises(ValueError):
        Form.fromElement(parse(xml))


def test_fixed_field_without_var_is_fine() -> None:
    form = Form.fromElement(x("<field type='fixed'><value>Hello</value></field>"))
    assert form.fields[0].var is None
