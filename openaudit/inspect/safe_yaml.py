"""YAML from a release, read safely: size, nesting and aliases bounded, no language-specific tags.

``yaml.safe_load`` already refuses ``!!python/...`` tags, but it does build alias "bombs" (a few lines that
expand to billions of nodes once walked), and it recurses without a depth limit. We walk the event stream
first, which costs little, and only construct documents that pass.
"""

from __future__ import annotations

from openaudit.errors import MalformedInput

MAX_YAML_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64
MAX_EVENTS = 500_000


def load_yaml_bounded(text: str, what: str) -> object:
    """Parse one YAML document from an untrusted file, or raise MalformedInput naming the problem."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise MalformedInput("yaml-too-large", f"{what} is larger than {MAX_YAML_BYTES} bytes")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    # Count the nodes the document would have once every alias is expanded: an alias adds the expanded
    # size of the node it names. Billion-laughs documents use few aliases but expand exponentially.
    anchor_sizes: dict[str, int] = {}
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, expanded size so far) per open collection
    expanded = events = aliases = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            events += 1
            if events > MAX_EVENTS:
                raise MalformedInput("yaml-too-large", f"{what} has more than {MAX_EVENTS} YAML events")
            tag = getattr(event, "tag", None)
            if tag and (tag.startswith("tag:yaml.org,2002:python/") or tag.startswith("!!python")):
                raise MalformedInput(
                    "yaml-code-tag", f"{what} carries the tag {tag!s}, which an unsafe YAML loader would execute"
                )
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                open_nodes.append((event.anchor, 1))
                if len(open_nodes) > MAX_DEPTH:
                    raise MalformedInput("yaml-too-deep", f"{what} nests deeper than {MAX_DEPTH} levels")
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, size = open_nodes.pop()
            elif isinstance(event, yaml.ScalarEvent):
                anchor, size = event.anchor, 1
            elif isinstance(event, yaml.AliasEvent):
                anchor, size = None, anchor_sizes.get(event.anchor, 1)
            else:
                continue
            if anchor is not None:
                anchor_sizes[anchor] = size
            if isinstance(event, yaml.AliasEvent):
                expanded += size
                aliases += 1
            if open_nodes:
                parent_anchor, parent_size = open_nodes[-1]
                open_nodes[-1] = (parent_anchor, parent_size + size)
            if size > MAX_EXPANDED_NODES or expanded > MAX_EXPANDED_NODES:
                if aliases:
                    raise MalformedInput(
                        "yaml-alias-bomb",
                        f"{what} uses YAML aliases that expand to more than {MAX_EXPANDED_NODES:,} nodes (an alias bomb)",
                    )
                raise MalformedInput("yaml-too-large", f"{what} holds more than {MAX_EXPANDED_NODES:,} YAML nodes")
        document = yaml.load(text, Loader=loader)
        _refuse_huge_integers(document, what)
        return document
    except MalformedInput:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise MalformedInput("invalid-yaml", f"{what} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise MalformedInput("yaml-too-deep", f"{what} nests too deeply") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors raise plain Python errors on well-formed scalars they cannot build:
        # `2024-13-45` (a date with month 13), an integer of more than 4,300 digits, `!!int abc`.
        raise MalformedInput("invalid-yaml", f"{what} is not valid YAML: a value cannot be built "
                             f"({type(exc).__name__}: {str(exc)[:120]})") from None


# Integers this long are no metadata value; hex and octal literals escape Python's 4,300-digit limit
# when parsed, then break str() and JSON output later.
MAX_INTEGER_BITS = 256


def _refuse_huge_integers(document: object, what: str) -> None:
    stack = [document]
    while stack:  # the document is already bounded to MAX_EXPANDED_NODES nodes
        value = stack.pop()
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INTEGER_BITS:
            raise MalformedInput("invalid-yaml", f"{what} holds an integer of {value.bit_length():,} bits")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
