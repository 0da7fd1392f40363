"""The filter matcher: rclone's documented pattern examples, rule order, default excludes."""

from __future__ import annotations

import pytest

from syncd.sync.filters import (
    DEFAULT_EXCLUDES, Excluded, FilterError, PathFilter, RuleSet, filter_pages, glob_to_regex,
)
import re


def matches(pattern: str, key: str) -> bool:
    return re.fullmatch(glob_to_regex(pattern), key, re.DOTALL) is not None


# (pattern, keys it matches, keys it does not): the examples of rclone's filtering docs.
RCLONE_EXAMPLES = [
    ("file.jpg", ["file.jpg", "directory/file.jpg"], ["afile.jpg", "directory/afile.jpg"]),
    ("/file.jpg", ["file.jpg"], ["afile.jpg", "directory/file.jpg"]),
    ("*.jpg", ["file.jpg", "directory/file.jpg"], ["file.jpg/anotherfile.png", "file.jpeg"]),
    ("dir/**", ["dir/file.jpg", "dir/dir1/dir2/file.jpg", "a/dir/file.jpg"],
     ["directory/file.jpg", "adir/file.jpg"]),
    ("/dir/**", ["dir/file.jpg", "dir/dir1/dir2/file.jpg"], ["a/dir/file.jpg"]),
    ("l?ss", ["less", "lass"], ["floss", "l/ss"]),
    ("h[ae]llo", ["hello", "hallo"], ["hullo"]),
    ("h[!ae]llo", ["hullo"], ["hello", "h/llo"]),
    ("h[a-c]llo", ["hallo", "hbllo"], ["hello"]),
    ("{one,two}_potato", ["one_potato", "two_potato"], ["three_potato", "_potato"]),
    (r"\*.jpg", ["*.jpg"], ["file.jpg"]),
    ("*.{jpg,png,gif}", ["a.jpg", "b/c.gif"], ["a.jpeg"]),
    ("potato**sausage", ["potatosausage", "potato/x/sausage"], ["potatos"]),
    ("*.p[lm]", ["a.pl", "a.pm"], ["a.py"]),
    ("secret/", ["secret/a.jpg", "x/secret/b/c.jpg"], ["secret", "secrets/a.jpg"]),
    ("{{.*\\.jpe?g}}", ["a.jpg", "b/a.jpeg"], ["a.png"]),
    ("/{{[0-9]{4}}}/*.jpg", ["2024/a.jpg"], ["24/a.jpg", "2024/b/a.jpg"]),
    ("[[:digit:]]*.raw", ["1a.raw"], ["a1.raw"]),
    ("a.b(c)+$", ["a.b(c)+$"], ["aXb(c)+$"]),
]


@pytest.mark.parametrize(("pattern", "yes", "no"), RCLONE_EXAMPLES)
def test_rclone_documented_examples(pattern, yes, no):
    for key in yes:
        assert matches(pattern, key), (pattern, key)
    for key in no:
        assert not matches(pattern, key), (pattern, key)


@pytest.mark.parametrize(("pattern", "reason"), [
    ("***", "too many stars"), ("ab]c", "']' without '['"), ("ab[c", "'[' without ']'"),
    ("ab{c", "'{' without '}'"), ("ab}c", "'}' without '{'"), ("{{(}}", "bad regular expression"),
    ("a\\", "lone"), ("", "empty"), ("[[:nope:]]", "unknown character class"),
])
def test_bad_patterns_are_named(pattern, reason):
    with pytest.raises(FilterError, match=re.escape(reason)):
        glob_to_regex(pattern)


def test_first_matching_rule_decides_and_filter_lines_keep_their_order():
    rules = RuleSet.from_table("dataset d", filters=["+ keep/*.tmp", "- *.tmp", "- /raw/**"])
    assert rules.excluded_by("keep/a.tmp") is None
    assert rules.excluded_by("other/a.tmp") == "dataset d: exclude *.tmp"
    assert rules.excluded_by("raw/x/y.jpg") == "dataset d: exclude /raw/**"
    assert rules.excluded_by("a.jpg") is None


def test_include_excludes_the_rest_and_exclude_goes_first():
    rules = RuleSet.from_table("driver disk", include=["*.jpg", "*.png"], exclude=["thumbs/**"])
    assert rules.excluded_by("a/b.jpg") is None
    assert rules.excluded_by("a/b.txt") == "driver disk: matches no include"
    assert rules.excluded_by("thumbs/b.jpg") == "driver disk: exclude thumbs/**"


def test_filter_line_syntax_is_checked():
    with pytest.raises(FilterError, match="expected '\\+ PATTERN'"):
        RuleSet.from_table("x", filters=["*.jpg"])


@pytest.mark.parametrize(("key", "rule"), [
    (".a.jpg.Xy12Zq", ".*.{{[A-Za-z0-9]{6}}}"), ("cats/.b.png.AbCdEf", ".*.{{[A-Za-z0-9]{6}}}"),
    ("film.mp4.part", "*.part"), ("d/x.crdownload", "*.crdownload"), ("x.tmp", "*.tmp"),
    ("docs/~$report.docx", "~$*"), ("cats/.DS_Store", ".DS_Store"),
])
def test_default_excludes(key, rule):
    assert rule in DEFAULT_EXCLUDES
    on = PathFilter.build(defaults=True)
    assert on.excluded_by(key) == f"default: exclude {rule}"
    assert PathFilter.build(defaults=False).excluded_by(key) is None


@pytest.mark.parametrize("key", ["a.jpg", ".hidden", ".a.jpg", "cats/.a.jpg.bak", "report.docx",
                                 "a.jpg.Xy12Zq", ".a.jpg.Xy12Z"])
def test_default_excludes_leave_ordinary_files(key):
    assert PathFilter.build(defaults=True).excluded_by(key) is None


def test_every_set_must_pass_and_the_first_refusal_is_named():
    path_filter = PathFilter.build(defaults=True, tables=[
        ("driver disk", {"exclude": ["*.raw"]}), ("dataset photos", {"include": ["cats/**"]})])
    assert path_filter.excluded_by("cats/a.jpg") is None
    assert path_filter.excluded_by("cats/a.raw") == "driver disk: exclude *.raw"
    assert path_filter.excluded_by("dogs/a.jpg") == "dataset photos: matches no include"
    assert path_filter.excluded_by("cats/a.tmp") == "default: exclude *.tmp"
    assert path_filter.describe()[-1] == "dataset photos: matches no include"
    assert not PathFilter.build(defaults=False, tables=[("driver disk", {})])


def test_filter_pages_counts_and_samples_by_rule():
    path_filter = PathFilter.build(defaults=True)
    excluded = Excluded()
    pages = [[("a.jpg", 1), ("a.tmp", 2)], [("b.tmp", 3), (".DS_Store", 4)]]
    kept = list(filter_pages(iter(pages), path_filter, excluded))
    assert kept == [[("a.jpg", 1)], []]
    assert excluded.counts == {"default: exclude *.tmp": 2, "default: exclude .DS_Store": 1}
    assert excluded.samples["default: exclude *.tmp"] == ["a.tmp", "b.tmp"]
    assert excluded.total == 3


def test_the_shortcut_for_exclude_only_filters_agrees_with_the_rules():
    path_filter = PathFilter.build(defaults=True, tables=[
        ("driver d", {"exclude": ["/raw/**", "h[ae]llo", "*.{raw,cr2}", "a\\*b", "x{{[0-9]+}}"]}),
        ("dataset p", {"filters": ["- secret/", "- thumbs/*.jpg"]})])
    assert path_filter.quick_keep is not None
    keys = ["a.jpg", "raw/a.jpg", "x/raw/a.jpg", "hello", "d/hallo", "hullo", "a.cr2", "a*b", "axb",
            "x12", "x1a", "secret/a", "b/secret/c/d", "thumbs/a.jpg", "thumbs/b/a.jpg", ".a.jpg.Ab12Cd",
            "~$x", "a.tmp", ".DS_Store", ".hidden", "tmp", "part"]
    for key in keys:
        assert path_filter.quick_keep(key) == (path_filter.excluded_by(key) is None), key
    # Whole pages scanned at once (file-name rules only) keep exactly what the rules keep.
    names = PathFilter.build(defaults=True, tables=[("d", {"exclude": ["*.raw", "*.cr2", "h[ae]llo"]})])
    assert names.page_scan is not None
    page = [(key,) for key in keys + ["a\nb.tmp", "c/.d.jpg.Ab12Cd", "x.tmp/y"]]
    kept = [info[0] for kept in filter_pages([page, page[:3]], names, Excluded()) for info in kept]
    assert kept == [k for k in keys + ["a\nb.tmp", "c/.d.jpg.Ab12Cd", "x.tmp/y"] + keys[:3]
                    if names.excluded_by(k) is None]
    newline_free = [(key,) for key in keys]
    assert [i[0] for p in filter_pages([newline_free], names, Excluded()) for i in p] == [
        k for k in keys if names.excluded_by(k) is None]
    assert PathFilter.build(defaults=False, tables=[("d", {"include": ["*.jpg"]})]).quick_keep is None
