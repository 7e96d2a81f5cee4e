"""Writes src/auditrail/types.py: TypedDicts for the schemas of auditrail's OpenAPI
document that the client takes and returns.

    auditrail openapi > openapi.json
    python3 tools/generate_types.py openapi.json > src/auditrail/types.py

The suite checks that the committed file is what this makes of the server's document.
"""

import json
import keyword
import sys
from typing import Any, Dict, List

# The schemas written, in this order (nested objects get classes of their own).
SCHEMAS = ["Event", "StoredEvent", "IngestAck", "ExportRequest", "Export", "InclusionProof", "ConsistencyProof"]

out: List[str] = []
done: Dict[str, str] = {}


def camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_"))


def type_of(schema: Dict[str, Any], name: str, doc: Dict[str, Any]) -> str:
    """The Python type of `schema`; an object with properties becomes a class `name`."""
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        if ref.startswith("DetailValue"):
            return "DetailValue"
        return type_of(doc["components"]["schemas"][ref], ref, doc)
    if "enum" in schema:
        values = [v for v in schema["enum"] if v is not None]
        lit = "Literal[" + ", ".join(json.dumps(v) for v in values) + "]"
        return f"Optional[{lit}]" if None in schema["enum"] else lit
    for key in ("anyOf", "oneOf"):
        if key in schema:
            # Members that only add formats (an IP address of either kind) leave the type.
            if not any(k in m for m in schema[key] for k in ("type", "$ref", "enum")):
                return type_of({k: v for k, v in schema.items() if k != key}, name, doc)
            members: List[str] = []
            for m in schema[key]:
                t = type_of(m, name, doc)
                if t not in members:
                    members.append(t)
            return members[0] if len(members) == 1 else "Union[" + ", ".join(members) + "]"
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    nullable = "null" in types
    types = [t for t in types if t != "null"]
    if len(types) != 1:
        return "Any"
    t = types[0]
    extra = schema.get("additionalProperties")
    if t == "object" and schema.get("properties") and not isinstance(extra, dict):
        py = klass(name, schema, doc)
    elif t == "object":
        py = "Dict[str, " + (type_of(extra, name + "Value", doc) if isinstance(extra, dict) and extra else "Any") + "]"
    elif t == "array":
        py = "List[" + type_of(schema.get("items") or {}, name + "Item", doc) + "]"
    else:
        py = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(t, "Any")
    return f"Optional[{py}]" if nullable else py


def klass(name: str, schema: Dict[str, Any], doc: Dict[str, Any]) -> str:
    """Writes the TypedDict of an object schema (required keys in a base class)."""
    if name in done:
        return name
    done[name] = name
    props = schema["properties"]
    required = [p for p in props if p in schema.get("required", [])]
    fields = {p: type_of(s, name + camel(p), doc) for p, s in sorted(props.items())}
    lines: List[str] = []
    doc_line = (schema.get("description") or "").split("\n")[0]
    if required:
        # Required keys may be Python keywords (`from`): the functional form takes them.
        base = f"_{name}Required"
        members = ", ".join(f'"{p}": {fields[p]}' for p in sorted(required))
        lines.append(f'{base} = TypedDict("{base}", {{{members}}})')
        lines += ["", ""]
        lines.append(f"class {name}({base}, total=False):")
    else:
        lines.append(f"class {name}(TypedDict, total=False):")
    if doc_line:
        lines.append(f'    """{doc_line}"""')
        lines.append("")
    optional = [p for p in sorted(props) if p not in required]
    if any(keyword.iskeyword(p) for p in optional):
        sys.exit(f"{name}: an optional key is a Python keyword; the class form cannot say it")
    lines += [f"    {p}: {fields[p]}" for p in optional]
    if not optional and not doc_line:
        lines.append("    pass")
    out.append("\n".join(lines))
    return name


def main() -> None:
    doc = json.load(open(sys.argv[1]))
    for name in SCHEMAS:
        klass(name, doc["components"]["schemas"][name], doc)
    print('"""The API\'s types, as tools/generate_types.py writes them from auditrail\'s OpenAPI')
    print('document. Do not edit: regenerate."""')
    print()
    print("from typing import Any, Dict, List, Literal, Optional, TypedDict, Union")
    print()
    print("# A value inside `details`: any JSON value (the server bounds its nesting).")
    print("DetailValue = Union[str, int, float, bool, None, List[Any], Dict[str, Any]]")
    for block in out:
        print()
        print()
        print(block)


main()
