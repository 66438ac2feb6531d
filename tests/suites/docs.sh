#!/usr/bin/env bash
# The documentation's links: every relative link in README.md and doc/*.md
# must point at a file that exists and, with a #fragment, at a heading of
# that file (GitHub's anchors). Needs no PostgreSQL and no build.
# One line per file (and per broken link), then "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
shopt -s nullglob

python3 - README.md doc/*.md <<'PYTHON'
import os
import re
import sys
from urllib.parse import unquote

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*(<[^>]*>|[^\s)]*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)=[\"']([^\"']+)[\"']", re.IGNORECASE)
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    fence = None
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            match = FENCE.match(line)
            if fence is None and match:
                fence = match.group(1)
            elif fence is not None and match and match.group(1)[0] == fence[0] \
                    and len(match.group(1)) >= len(fence) and not line.strip()[len(match.group(1)):].strip():
                fence = None
            elif fence is None:
                yield number, line


def slug(heading):
    """GitHub's anchor for a heading: its rendered text, lowercased, with
    punctuation other than - and _ dropped and each space made a -."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", text)   # links keep their text
    text = re.sub(r"<[^>]+>", "", text)                                      # inline HTML
    text = re.sub(r"(?<!\w)_+(.+?)_+(?!\w)", r"\1", text)                     # _emphasis_
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path):
    """Every anchor a file offers, with GitHub's -1, -2 for repeated headings."""
    seen = {}
    found = set()
    previous = None
    for _number, line in prose_lines(path):
        found.update(HTML_ANCHOR.findall(line))
        heading = None
        match = ATX.match(line)
        if match:
            heading = match.group(2)
        elif previous and previous.strip() and SETEXT.match(line) and not ATX.match(previous):
            heading = previous
        previous = line
        if heading is None:
            continue
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path):
    """(line number, target) of every link outside code, inline or by reference."""
    for number, line in prose_lines(path):
        line = CODE_SPAN.sub("", line)
        targets = [m.group(2) for m in INLINE_LINK.finditer(line)]
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
        for target in targets:
            yield number, target.strip("<>")


def problem(source, target, anchor_cache):
    """Why a link does not resolve, or None when it does."""
    path, _, fragment = target.partition("#")
    path = unquote(path)
    if not path:
        resolved = source
    elif path.startswith("/"):
        resolved = os.path.normpath(path.lstrip("/"))
    else:
        resolved = os.path.normpath(os.path.join(os.path.dirname(source), path))
    if not os.path.exists(resolved):
        return f"{resolved} does not exist"
    if not fragment or not resolved.endswith(".md") or os.path.isdir(resolved):
        return None
    if resolved not in anchor_cache:
        anchor_cache[resolved] = anchors(resolved)
    if unquote(fragment).lower() not in anchor_cache[resolved]:
        return f"{resolved} has no heading #{fragment}"
    return None


passed = failed = 0
anchor_cache = {}
linked_from_readme = set()
for source in sys.argv[1:]:
    count = 0
    broken = []
    for number, target in links(source):
        if SCHEME.match(target):          # http(s), mailto and the like: not checked
            continue
        count += 1
        why = problem(source, target, anchor_cache)
        if why:
            broken.append(f"line {number}, ({target}): {why}")
        elif source == "README.md":
            linked_from_readme.add(os.path.normpath(unquote(target.partition("#")[0])))
    if broken:
        for line in broken:
            failed += 1
            print(f"  FAIL links in {source}: {line}")
    else:
        passed += 1
        print(f"  ok  links in {source} ({count} relative)")

orphans = sorted(p for p in sys.argv[1:] if p.startswith("doc/") and p not in linked_from_readme)
if orphans:
    failed += 1
    print(f"  FAIL every doc/ page is linked from README.md: not linked: {', '.join(orphans)}")
else:
    passed += 1
    print("  ok  every doc/ page is linked from README.md")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PYTHON
