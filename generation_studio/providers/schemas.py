"""Model input contracts: read from published schemas, checked before sending.

A contract is a model's input schema (OpenAPI) reduced to what a check
needs: ``{"properties": {name: spec}, "required": [...]}``, each spec keeping
``type``, ``enum``, ranges, lengths, ``items``, ``anyOf``, ``properties``,
``format`` and ``default``, with ``$ref`` and ``allOf`` resolved.

``problem(spec, value)`` says what an input takes when ``value`` does not
fit it; ``fit(spec, value)`` gives the accepted value nearest to one the
studio chose (an aspect ratio, a format, a frame count).
"""

import math

KEEP = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "minLength", "maxLength", "minItems", "maxItems", "format", "default")
SYNONYMS = {"jpg": "jpeg", "jpeg": "jpg"}
FALLBACKS = {"webp": ("jpg", "jpeg", "png"), "png": ("png",), "jpg": ("jpeg", "webp", "png")}


def flatten(doc: dict, schema: dict) -> dict:
    """The contract of the object ``schema`` found in the OpenAPI document ``doc``."""
    schema = _resolve(doc, schema)
    return {"properties": {name: _reduce(doc, spec)
                           for name, spec in (schema.get("properties") or {}).items()},
            "required": list(schema.get("required") or [])}


def _resolve(doc, spec, depth=0) -> dict:
    if depth > 20 or not isinstance(spec, dict):
        return spec if isinstance(spec, dict) else {}
    if "$ref" in spec:
        target = doc
        for part in spec["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        spec = {**_resolve(doc, target, depth + 1), **{k: v for k, v in spec.items() if k != "$ref"}}
    if "allOf" in spec:
        merged = {}
        for part in spec["allOf"]:
            merged.update(_resolve(doc, part, depth + 1))
        spec = {**merged, **{k: v for k, v in spec.items() if k != "allOf"}}
    return spec


def _reduce(doc, spec) -> dict:
    spec = _resolve(doc, spec)
    out = {k: spec[k] for k in KEEP if k in spec}
    if isinstance(spec.get("items"), dict):
        out["items"] = _reduce(doc, spec["items"])
    if spec.get("anyOf") or spec.get("oneOf"):
        out["anyOf"] = [_reduce(doc, s) for s in spec.get("anyOf") or spec.get("oneOf")]
    if isinstance(spec.get("properties"), dict):
        out["properties"] = {k: _reduce(doc, v) for k, v in spec["properties"].items()}
    return out


def problem(spec: dict, value) -> str | None:
    """None when ``value`` fits ``spec``; else what the input takes."""
    if "anyOf" in spec:
        branches = [b for b in spec["anyOf"] if b.get("type") != "null"]
        if value is None or any(problem(b, value) is None for b in branches):
            return None
        return " or ".join(describe(b) for b in branches)
    if "enum" in spec:
        return None if any(_equal(value, e) for e in spec["enum"]) else describe(spec)
    kind = spec.get("type")
    if kind and not _is(kind, value):
        return describe(spec)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = spec.get("minimum"), spec.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high) or \
                _excluded(spec, value):
            return describe(spec)
    if isinstance(value, str):
        if len(value) < spec.get("minLength", 0) or len(value) > spec.get("maxLength", math.inf):
            return describe(spec)
        if spec.get("format") == "uri" and not value.startswith(("http://", "https://", "data:")):
            return describe(spec)
    if isinstance(value, list):
        if not spec.get("minItems", 0) <= len(value) <= spec.get("maxItems", math.inf):
            return describe(spec)
        if any(problem(spec.get("items") or {}, item) for item in value):
            return describe(spec)
    if isinstance(value, dict) and spec.get("properties") and any(
            k not in spec["properties"] or problem(spec["properties"][k], v)
            for k, v in value.items()):
        return describe(spec)
    return None


def _equal(a, b) -> bool:
    """``a == b`` as JSON sees it: 5 and 5.0 are equal; 5 and "5", or 1 and true, are not."""
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return a == b and (numbers or type(a) is type(b))


def same(a, b) -> bool:
    """The same choice, loosely: 5, 5.0 and "5"; jpg and jpeg."""
    if _number(a) is not None and _number(a) == _number(b):
        return True
    return str(a) == str(b) or SYNONYMS.get(str(a)) == str(b)


def _is(kind, value) -> bool:
    if isinstance(kind, list):
        return any(_is(k, value) for k in kind)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"integer": number and float(value).is_integer(), "number": number,
            "string": isinstance(value, str), "boolean": isinstance(value, bool),
            "array": isinstance(value, list), "object": isinstance(value, dict),
            "null": value is None}.get(kind, True)


def _excluded(spec, value) -> bool:
    low, high = spec.get("exclusiveMinimum"), spec.get("exclusiveMaximum")
    return (isinstance(low, (int, float)) and value <= low) or \
        (isinstance(high, (int, float)) and value >= high)


def describe(spec: dict) -> str:
    """What ``spec`` takes, in words: ``a number from 0 to 10``, ``one of 16:9, 9:16``."""
    if "enum" in spec:
        return "one of " + ", ".join(str(e) for e in spec["enum"])
    if "anyOf" in spec:
        return " or ".join(describe(b) for b in spec["anyOf"] if b.get("type") != "null")
    kind = spec.get("type", "value")
    noun = {"integer": "an integer", "number": "a number", "string": "text",
            "boolean": "true or false", "array": "a list", "object": "an object"}.get(kind, "a value")
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    high = spec.get("maximum", spec.get("exclusiveMaximum"))
    if low is not None and high is not None:
        return f"{noun} from {_n(low)} to {_n(high)}"
    if low is not None:
        return f"{noun} of at least {_n(low)}"
    if high is not None:
        return f"{noun} of at most {_n(high)}"
    if kind == "string" and "maxLength" in spec:
        return f"text of at most {spec['maxLength']:,} characters"
    if kind == "string" and spec.get("format") == "uri":
        return "a URL (http, https or data:)"
    if kind == "array" and "maxItems" in spec:
        return f"a list of at most {spec['maxItems']} items"
    return noun


def _n(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def fit(spec: dict, value):
    """The value nearest to ``value`` that ``spec`` accepts (``value`` when none is near)."""
    enum = spec.get("enum")
    if enum:
        for choice in enum:
            if _equal(choice, value):
                return choice
        for choice in (SYNONYMS.get(str(value)), *FALLBACKS.get(str(value), ())):
            if choice in enum:
                return choice
        for parse in (_ratio, _number):
            options = [(e, parse(e)) for e in enum if parse(e) is not None]
            wanted = parse(value)
            if options and wanted is not None:  # nearest on a log scale; ties: same orientation
                return min(options, key=lambda o: (round(abs(math.log(o[1] / wanted)), 9),
                                                   _side(o[1]) != _side(wanted)))[0]
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = spec.get("minimum"), spec.get("maximum")
        if low is not None and value < low:
            value = math.ceil(low) if spec.get("type") == "integer" else low
        if high is not None and value > high:
            value = math.floor(high) if spec.get("type") == "integer" else high
    return value


def _side(x: float) -> int:
    """-1 below 1 (portrait), 0 at 1 (square), 1 above (landscape)."""
    return (x > 1) - (x < 1)


def _ratio(text):
    try:
        width, height = (float(n) for n in str(text).split(":"))
        return width / height if width > 0 and height > 0 else None
    except ValueError:
        return None


def _number(value):
    try:
        number = float(value)
        return number if number > 0 else None
    except (TypeError, ValueError):
        return None
