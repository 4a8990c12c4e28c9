"""The fact world's generator: invented people with attribute values drawn once per person,
biographies from templates where `{a|b|c}` is a harmless choice drawn afresh at every use, and
the exact character spans of every value, choice and name."""

from __future__ import annotations

import json
import os
import random
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_WORLD = os.path.join(ROOT, "bench", "assets", "factworld.json")
SECOND_WORLD = os.path.join(ROOT, "bench", "assets", "factworld_companies.json")  # kept apart
FIELD = re.compile(r"\{([^{}]*)\}")


def load_world(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        world = json.load(f)
    need = {"seed", "people", "held_out", "bios_per_person", "first_names", "last_names"}
    need |= {"attributes", "templates", "filler"}
    missing = need - set(world)
    if missing:
        raise ValueError(f"{path}: missing keys {sorted(missing)}")
    if set(world["templates"]) != set(world["attributes"]):
        raise ValueError(f"{path}: every attribute needs templates, and only attributes")
    if world["people"] > len(world["first_names"]) * len(world["last_names"]):
        raise ValueError(f"{path}: fewer distinct names than people")
    return world


def attribute_values(spec) -> list[str]:
    """An attribute's possible values: a list, or {"range": [first, last]} of integers."""
    if isinstance(spec, dict):
        lo, hi = spec["range"]
        return [str(v) for v in range(lo, hi + 1)]
    return list(spec)


def render(template: str, name: str, value: str | None, attr: str | None, rng: random.Random):
    """(text, spans) of one template: `{name}`, `{value}` and `{a|b|c}` (a choice drawn now).
    A span is (start, end, kind, attribute) in characters, kind "value" or "choice"."""
    text, spans, at = "", [], 0
    for m in FIELD.finditer(template):
        text += template[at : m.start()]
        field = m[1]
        if field == "name":
            piece, kind = name, "name"
        elif field == "value":
            piece, kind = value, "value"
        else:
            piece, kind = rng.choice(field.split("|")), "choice"
        if kind:
            spans.append(
                (len(text), len(text) + len(piece), kind, attr if kind == "value" else None)
            )
        text += piece
        at = m.end()
    return text + template[at:], spans


def make_people(world: dict) -> list[dict]:
    rng = random.Random(world["seed"])
    names = [f"{f} {last}" for f in world["first_names"] for last in world["last_names"]]
    names = rng.sample(names, world["people"])
    values = {a: attribute_values(s) for a, s in world["attributes"].items()}
    return [{"name": n, "facts": {a: rng.choice(v) for a, v in values.items()}} for n in names]


def biography(person: dict, world: dict, rng: random.Random) -> tuple[str, list]:
    """Every attribute stated once (template and order drawn here) among fillers."""
    parts = [(a, rng.choice(world["templates"][a])) for a in world["attributes"]]
    parts += [(None, rng.choice(world["filler"])) for _ in range(world.get("fillers_per_bio", 3))]
    rng.shuffle(parts)
    text, spans = "", []
    for attr, template in parts:
        value = person["facts"].get(attr) if attr else None
        piece, piece_spans = render(template, person["name"], value, attr, rng)
        start = len(text) + (1 if text else 0)
        text += (" " if text else "") + piece
        spans += [(s + start, e + start, k, a) for s, e, k, a in piece_spans]
    return text, spans


def build_corpus(world: dict) -> dict:
    """Training and held-out documents ({"id", "text"}), the spans of each, the people."""
    people = make_people(world)
    rng = random.Random(world["seed"] + 1)
    split = len(people) - world["held_out"]
    docs, spans = {"train": [], "heldout": []}, {}
    for i, person in enumerate(people):
        part = "train" if i < split else "heldout"
        for j in range(world["bios_per_person"]):
            text, s = biography(person, world, rng)
            doc_id = f"p{i:05d}-b{j}"
            docs[part].append({"id": doc_id, "text": text})
            spans[doc_id] = s
    return {"docs": docs, "spans": spans, "people": people, "split": split}


def prompts(corpus: dict, world: dict, people: int | None) -> list[dict]:
    """For held-out people (their first biography): the text up to each value, the truth, and
    the attribute's other values."""
    values = {a: attribute_values(s) for a, s in world["attributes"].items()}
    held = [d for d in corpus["docs"]["heldout"] if d["id"].endswith("-b0")][:people]
    out = []
    for d in held:
        for s, e, kind, attr in corpus["spans"][d["id"]]:
            if kind == "value":
                out.append(
                    {
                        "prompt": d["text"][:s].rstrip(" "),
                        "truth": d["text"][s:e],
                        "values": values[attr],
                    }
                )
    return out


def stated_value(text: str, values: list[str]) -> str | None:
    """The attribute value the generated text starts with (the longest), if any."""
    text = text.strip()
    found = [v for v in values if text.startswith(v) and not text[len(v) : len(v) + 1].isalnum()]
    return max(found, key=len) if found else None
