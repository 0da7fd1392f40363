"""Which storage keys become items: include/exclude rules in rclone's filter syntax.

A pattern is matched against the key relative to the driver's folder (`cats/a.jpg`):

- a pattern starting with `/` is anchored at that folder; any other matches at the end of
  the key, at any depth (`*.jpg` matches `a.jpg` and `cats/a.jpg`; `a.jpg` does not match
  `ba.jpg`); a pattern ending with `/` matches everything under such a folder;
- `*` is any run of characters but `/`, `**` any run including `/`, `?` one character but
  `/`, `[abc]` / `[a-z]` / `[!abc]` one of (or none of) a set, `{jpg,png}` one of the
  alternatives, `\\` escapes the next character, `{{regexp}}` a Python regular expression
  (in a pattern with no `/`, matched within the file name).

Rules are tried in order and the first that matches decides. `filters` lines are written as
rclone's `--filter`: `"- *.tmp"` excludes, `"+ *.jpg"` includes. A table's `include` list,
if not empty, excludes every key none of its rules matched (as rclone's `--include`); its
`exclude` rules are tried before its `include` rules. A key must pass the default excludes
(in-progress downloads and editor temp files, below), the driver's rules and the dataset's
rules; the first that turns it away is named in reports (`sync --dry-run`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# Files that are being written and will be renamed, or never belong in a dataset:
DEFAULT_EXCLUDES = (
    ".*.{{[A-Za-z0-9]{6}}}",  # rsync's temporary file: .NAME.XXXXXX, renamed to NAME when complete
    "*.part",  # Firefox, wget, curl -C and many downloaders
    "*.crdownload",  # Chrome, Edge
    "*.tmp",
    "~$*",  # Microsoft Office lock files
    ".DS_Store",  # macOS Finder
)
SAMPLE = 20  # excluded keys remembered per rule, for reports
_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": r"\s", "xdigit": "0-9A-Fa-f", "punct": r"!-/:-@\[-`{-~", "word": r"\w",
}


class FilterError(ValueError):
    """A filter pattern cannot be parsed; the message quotes it and says why."""


def glob_to_regex(pattern: str) -> str:
    """The Python regular expression (for `re.fullmatch` on a key) of one rclone glob."""
    if not pattern:
        raise FilterError("empty pattern")
    anchored = pattern.startswith("/")
    body = pattern[1:] if anchored else pattern
    folder = body.endswith("/") and not body.endswith("\\/")
    if folder:
        body = body[:-1]
    out = [] if anchored else [_ANY_FOLDER]
    braces = 0
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            if i + 1 >= n:
                raise FilterError(f"{pattern!r}: ends with a lone '\\'")
            out.append(re.escape(body[i + 1]))
            i += 2
        elif c == "*":
            stars = len(body[i:]) - len(body[i:].lstrip("*"))
            if stars > 2:
                raise FilterError(f"{pattern!r}: too many stars ('***')")
            out.append("[^/]*" if stars == 1 else ".*")
            i += stars
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            cls, i = _char_class(pattern, body, i)
            out.append(cls)
        elif c == "]":
            raise FilterError(f"{pattern!r}: ']' without '['")
        elif c == "{" and body.startswith("{{", i):
            end = body.find("}}", i + 2)
            if end < 0:
                raise FilterError(f"{pattern!r}: '{{{{' without '}}}}'")
            while body.startswith("}", end + 2):  # `{{a{2}}}`: the longest run of braces ends it
                end += 1
            regex = body[i + 2:end]
            try:
                re.compile(regex)
            except re.error as error:
                raise FilterError(f"{pattern!r}: bad regular expression {regex!r}: {error}") from None
            out.append(f"(?:{regex})")
            i = end + 2
        elif c == "{":
            braces += 1
            out.append("(?:")
            i += 1
        elif c == "}":
            if not braces:
                raise FilterError(f"{pattern!r}: '}}' without '{{'")
            braces -= 1
            out.append(")")
            i += 1
        elif c == "," and braces:
            out.append("|")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    if braces:
        raise FilterError(f"{pattern!r}: '{{' without '}}'")
    if folder:
        out.append("/.*")
    regex = "".join(out)
    try:
        re.compile(regex)
    except re.error as error:
        raise FilterError(f"{pattern!r}: {error}") from None
    return regex


def _char_class(pattern: str, body: str, start: int) -> tuple[str, int]:
    i = start + 1
    out = ["["]
    if i < len(body) and body[i] in "!^":
        out.append("^/")  # a set is one character of a name: never the separator
        i += 1
    first = True
    while i < len(body):
        c = body[i]
        if c == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        if c == "[" and body.startswith("[:", i):
            end = body.find(":]", i + 2)
            name = body[i + 2:end] if end > 0 else ""
            if name not in _POSIX_CLASSES:
                raise FilterError(f"{pattern!r}: unknown character class [:{name}:]")
            out.append(_POSIX_CLASSES[name])
            i = end + 2
        elif c == "\\" and i + 1 < len(body):
            out.append(re.escape(body[i + 1]))
            i += 2
        else:
            out.append("\\" + c if c in "[]\\^" else c)
            i += 1
        first = False
    raise FilterError(f"{pattern!r}: '[' without ']'")


@dataclass(frozen=True)
class Rule:
    action: str  # include | exclude
    pattern: str
    where: str  # "default", "driver NAME", "dataset NAME"

    @property
    def label(self) -> str:
        return f"{self.where}: {self.action} {self.pattern}"


def parse_filter_line(line: str) -> tuple[str, str]:
    """An rclone `--filter` line, `"- pattern"` or `"+ pattern"`: (action, pattern)."""
    sign, _, pattern = line.partition(" ")
    if sign not in ("+", "-") or not pattern:
        raise FilterError(f"{line!r}: expected '+ PATTERN' (include) or '- PATTERN' (exclude)")
    return ("include" if sign == "+" else "exclude"), pattern


class RuleSet:
    """Rules tried in order, the first match deciding.

    Rules that look at the file name only (not anchored, no `/` and no `**`) are matched
    against the key's last segment, and the others against the whole key: one regular
    expression each, whose alternatives keep the rules' order (`fullmatch` tries them in
    turn), so deciding a key costs at most two matches whatever the number of rules."""

    def __init__(self, rules: Iterable[Rule], *, unmatched: str | None = None):
        self.rules = tuple(rules)
        self.unmatched = unmatched  # the label excluding keys no rule matched, if any
        names, paths = [], []
        for index, rule in enumerate(self.rules):
            if _name_only(rule.pattern):
                names.append(f"(?P<r{index}>{glob_to_regex(rule.pattern)[len(_ANY_FOLDER):]})")
            else:
                paths.append(f"(?P<r{index}>{glob_to_regex(rule.pattern)})")
        self._names = re.compile("|".join(names), re.DOTALL).fullmatch if names else None
        self._paths = re.compile("|".join(paths), re.DOTALL).fullmatch if paths else None

    @classmethod
    def from_table(cls, where: str, *, include: Iterable[str] = (), exclude: Iterable[str] = (),
                   filters: Iterable[str] = ()) -> RuleSet:
        include, rules = list(include), []
        for line in filters:
            action, pattern = parse_filter_line(line)
            rules.append(Rule(action, pattern, where))
        rules += [Rule("exclude", p, where) for p in exclude]
        rules += [Rule("include", p, where) for p in include]
        return cls(rules, unmatched=f"{where}: matches no include" if include else None)

    def __bool__(self) -> bool:
        return bool(self.rules) or self.unmatched is not None

    def excluded_by(self, key: str) -> str | None:
        first = len(self.rules)
        if self._names is not None:
            match = self._names(key[key.rfind("/") + 1:])
            if match is not None:
                first = int(match.lastgroup[1:])
        if self._paths is not None:
            match = self._paths(key)
            if match is not None:
                first = min(first, int(match.lastgroup[1:]))
        if first == len(self.rules):
            return self.unmatched
        rule = self.rules[first]
        return rule.label if rule.action == "exclude" else None


_ANY_FOLDER = "(?:.*/)?"  # what glob_to_regex puts before a pattern that is not anchored


_SPECIAL = "*?[]{}\\"


def _literal_ends(pattern: str) -> tuple[str, str]:
    """The literal text every name a file-name pattern matches starts and ends with."""
    start = next((i for i, c in enumerate(pattern) if c in _SPECIAL), len(pattern))
    end = max(pattern.rfind(c) for c in _SPECIAL)
    return pattern[:start], pattern[end + 1:] if end >= 0 else pattern


def _page_scanner(starts: tuple[str, ...], ends: tuple[str, ...]):
    """A function of a listing page's keys joined by newlines that yields a position in each
    line whose file name starts with one of `starts` or ends with one of `ends` (and maybe
    in others): string searches in C, so a page with no such name costs next to nothing."""
    suffixes = re.compile(f"(?:{'|'.join(map(re.escape, ends))})$", re.MULTILINE) if ends else None
    needles = [sep + start for start in starts for sep in ("/", "\n")]

    def scan(text: str) -> Iterator[int]:
        if suffixes is not None:
            for match in suffixes.finditer(text):
                yield match.start()
        for start in starts:
            if text.startswith(start):
                yield 0
        for needle in needles:
            at = text.find(needle)
            while at >= 0:
                yield at + 1
                at = text.find(needle, at + 1)

    return scan


def _name_only(pattern: str) -> bool:
    """True for a pattern that can only match a key's last segment."""
    glob = re.sub(r"\{\{.*?\}\}+", "", pattern)  # {{regexp}}: within the name (documented)
    return not glob.startswith("/") and "/" not in glob and "**" not in glob


class PathFilter:
    """The rules a dataset's keys must all pass. `excluded_by(key)` is None for a key that
    becomes an item, else the label of the rule that turned it away."""

    def __init__(self, sets: Iterable[RuleSet] = ()):
        self.sets = tuple(s for s in sets if s)
        self.page_scan = None  # set by _quick_keep where it can be: see _page_scanner
        self.quick_keep = self._quick_keep()

    def _quick_keep(self):
        """Where no set has include rules: a test that is True for a key no rule matches
        (most keys); else None. A file-name rule with a literal start or end (`*.tmp`,
        `~$*`) can only match names that start or end so: two string tests rule most keys
        out before any regular expression runs."""
        if not self.sets or any(s.unmatched or any(r.action == "include" for r in s.rules)
                                for s in self.sets):
            return None
        rules = [rule for s in self.sets for rule in s.rules]
        names = [r.pattern for r in rules if _name_only(r.pattern)]
        paths = [glob_to_regex(r.pattern) for r in rules if not _name_only(r.pattern)]
        name = re.compile("|".join(glob_to_regex(p)[len(_ANY_FOLDER):] for p in names),
                          re.DOTALL).fullmatch if names else None
        path = re.compile("|".join(paths), re.DOTALL).fullmatch if paths else None
        ends, starts = [], []
        for pattern in names:
            prefix, suffix = _literal_ends(pattern)
            if suffix:
                ends.append(suffix)
            elif prefix:
                starts.append(prefix)
            else:
                ends = starts = None  # a rule like `*` or `?x*`: no shortcut
                break
        ends, starts = tuple(ends or ()), tuple(starts or ())
        shortcut = ends or starts
        if shortcut and path is None:
            self.page_scan = _page_scanner(starts, ends)

        def keep(key: str) -> bool:
            if name is not None:
                base = key[key.rfind("/") + 1:]
                if not (shortcut and not base.endswith(ends) and not base.startswith(starts)):
                    if name(base) is not None:
                        return False
            return path is None or path(key) is None

        return keep

    @classmethod
    def build(cls, *, defaults: bool, tables: Iterable[tuple[str, dict]] = ()) -> PathFilter:
        """`tables`: (where, {"include": [...], "exclude": [...], "filters": [...]}) pairs."""
        sets = [RuleSet(Rule("exclude", p, "default") for p in DEFAULT_EXCLUDES)] if defaults else []
        sets += [RuleSet.from_table(where, **table) for where, table in tables]
        return cls(sets)

    def __bool__(self) -> bool:
        return bool(self.sets)

    def excluded_by(self, key: str) -> str | None:
        for rules in self.sets:
            label = rules.excluded_by(key)
            if label is not None:
                return label
        return None

    def excluded(self, key: str) -> bool:
        return self.excluded_by(key) is not None

    def describe(self) -> list[str]:
        """Every rule, in the order tried, for messages and `--dry-run`."""
        lines = []
        for rules in self.sets:
            lines += [rule.label for rule in rules.rules]
            if rules.unmatched:
                lines.append(rules.unmatched)
        return lines


NO_FILTER = PathFilter()


@dataclass
class Excluded:
    """What a filter turned away: a count and the first keys per rule."""

    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, label: str, key: str) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1
        sample = self.samples.setdefault(label, [])
        if len(sample) < SAMPLE:
            sample.append(key)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def filter_pages(pages: Iterable[list], path_filter: PathFilter, excluded: Excluded) -> Iterator[list]:
    """Listing pages (of ObjectInfo, key first) without the keys `path_filter` turns away."""
    check, quick, scan = path_filter.excluded_by, path_filter.quick_keep, path_filter.page_scan
    try:
        for page in pages:
            if scan is not None and page:
                keys = getattr(page, "keys", None)  # a FindPage: its keys without parsing it
                text = "\n".join(keys() if keys else [info[0] for info in page])
                if text.count("\n") == len(page) - 1:  # no key of its own holds a newline
                    lines = {text.count("\n", 0, at) for at in scan(text)}
                    if not lines:
                        yield page  # the usual case: no key could match any rule
                        continue
                    gone = set()
                    for line in lines:
                        key = page[line][0]
                        label = check(key)
                        if label is not None:
                            excluded.add(label, key)
                            gone.add(line)
                    yield [info for index, info in enumerate(page) if index not in gone] if gone else page
                    continue
            kept = []
            for info in page:
                if quick is not None and quick(info[0]):
                    kept.append(info)
                    continue
                label = check(info[0])
                if label is None:
                    kept.append(info)
                else:
                    excluded.add(label, info[0])
            yield kept
    finally:
        close = getattr(pages, "close", None)
        if close:
            close()  # a listing child process (find) ends with its pages
