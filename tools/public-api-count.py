#!/usr/bin/env python3
"""Counts the public API items of bstore from rustdoc's JSON output.

    cargo +nightly rustdoc -p bstore --lib --no-default-features -- \
        -Z unstable-options --output-format json
    tools/public-api-count.py TARGET_DIR/doc/bstore.json

Prints the items by kind (modules, types, functions and methods, fields, variants, constants)
and by top-level module. Items are counted once, reached through modules and re-exports alike,
so the figure is what a user of the crate can name.
"""
import collections
import json
import sys


def main(path):
    doc = json.load(open(path))
    index = doc["index"]
    local = {k: v for k, v in index.items() if v.get("crate_id") == 0}
    kinds = collections.Counter()
    modules = collections.Counter()
    seen = set()

    def kind_of(item):
        return next(iter(item["inner"]))

    def walk(item_id, top):
        if item_id in seen or str(item_id) not in local:
            return
        seen.add(item_id)
        item = local[str(item_id)]
        if item.get("visibility") != "public" and kind_of(item) not in ("variant", "impl"):
            return
        kind = kind_of(item)
        inner = item["inner"][kind]
        if kind != "impl" and kind != "use":
            kinds[kind] += 1
            modules[top] += 1
        children = []
        if kind == "use":
            if inner.get("id") is not None:
                children = [inner["id"]]
        elif kind == "module":
            children = inner["items"]
        elif kind == "struct":
            body = inner["kind"]
            if isinstance(body, dict):
                body = next(iter(body.values()))
                if isinstance(body, dict):
                    children = body.get("fields", [])
                elif isinstance(body, list):
                    children = [f for f in body if f is not None]
            children += inner.get("impls", [])
        elif kind == "enum":
            children = inner["variants"] + inner.get("impls", [])
        elif kind == "trait":
            children = inner["items"]
        elif kind == "impl":
            if inner.get("trait") is None:
                children = inner["items"]
        for child in children:
            walk(child, top)

    root = local[str(doc["root"])]
    for child in root["inner"]["module"]["items"]:
        item = local.get(str(child))
        if item is None:
            continue
        name = item.get("name") or "(re-export)"
        walk(child, name if kind_of(item) == "module" else "(root re-exports)")
    total = sum(kinds.values())
    print(f"public items: {total}")
    for kind, n in kinds.most_common():
        print(f"  {kind}: {n}")
    print("by top-level module:")
    for module, n in modules.most_common():
        print(f"  {module}: {n}")


if __name__ == "__main__":
    main(sys.argv[1])
