"""The explorers' building blocks (reports/explorer.py): tokens, ranks and the generated CSS,
which goes into the page's <style> unescaped and so must only ever hold sanitised tokens."""

from __future__ import annotations

import copy

from nnaudit.reports.context import Source
from nnaudit.reports.explorer import Explorer, Filter, explorer_css, options, ranks, token
from nnaudit.reports.render import build_report, render_html

EVIL = '"]{}</style><script>alert(1)</script>'


def test_tokens_are_safe_in_css_and_html():
    assert token(7) == "7" and token(0.05) == "0.05" and token(None) == "none" and token("apgd-ce") == "apgd-ce"
    assert set(token(EVIL)) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    assert options([3, None, 1, 3], lambda v: f"class {v}") == [("3", "class 3"), ("1", "class 1")]


def test_ranks_are_stable_with_missing_values_last():
    assert ranks([0.3, None, 0.1, 0.3]) == [1, 3, 0, 2]
    assert ranks([0.3, None, 0.1, 0.3], descending=True) == [0, 3, 2, 1]
    assert ranks([]) == []


def test_css_has_one_rule_per_filter_value_and_sort():
    x = Explorer(ident="x-r1", noun="things", columns=["a", "b"], numeric=frozenset({1}),
                 filters=[Filter("verdict", [("unsafe", "unsafe"), ("safe", "safe")]), Filter("class", [("3", "3")])],
                 sorts=["default", "by a", "by b"])
    css = explorer_css([x]).splitlines()
    assert len(css) == 1 + 3 + 2
    assert '#x-r1:has(#x-r1-f1 option[value="3"]:checked) .xrow:not([data-f1="3"]){display:none}' in css
    assert '#x-r1:has(#x-r1-sort option[value="2"]:checked) .xrow{--o:var(--s2)}' in css


def test_hostile_names_stay_out_of_the_style_and_are_escaped(schema_docs):
    doc = copy.deepcopy(schema_docs["attack"])
    for ex in doc["examples"]:
        ex["attack"] = EVIL
    html = render_html(build_report([Source("r1", "attack.json", doc)]))
    style = html[html.index("<style>") + len("<style>"):html.index("</style>")]
    assert "<" not in style and "alert(1)" not in style
    assert "<script" not in html and "&lt;/style&gt;&lt;script&gt;" in html
    assert "2 adversarial examples: filter and sort" in html
