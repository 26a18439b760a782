"""Transparent rules for what a prompt template asks for: reasoning elicitation and capability.

No model, no download: each rule is a named regular expression over the *normalised* text
(lower case, numbers as ``0``, quoted spans as ``qstr``, punctuation as single spaces; see
:func:`graphinv.ingest.fingerprint.normalise`). The name of every rule that fired is kept
with the template, so a score explanation can say *why* a template counts as reasoning
elicitation ("rule full_reasoning") or as a coding prompt ("keyword python").

Examples
--------
>>> classify("you are a patient math teacher solve the integral step by step")
Classification(category='math', category_rule='math', elicits_reasoning=True, \
reasoning_rules=('step_by_step', 'teacher_persona'))
>>> classify("hello there how are you").category
'chat'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Phrases that ask a model to expose its reasoning, the signal distillers need most.
REASONING_RULES: dict[str, str] = {
    "step_by_step": r"\bstep by step\b|\bthink (?:it |this )?through\b|\bwalk me through\b"
    r"|\bone step at a time\b|\breason carefully\b",
    "full_reasoning": r"\b(?:show|give|write out|include|reveal|explain|output|expose)"
    r"(?: me)?(?: all| every| your| the)? (?:full |complete |entire |hidden |internal |whole )?"
    r"(?:reasoning|chain of thought|thought process|thinking|derivation|intermediate steps)\b"
    r"|\bchain of thought\b|\bthinking tokens?\b|\bscratchpad\b",
    "rubric_grading": r"\brubric\b|\bgrade (?:the|this|each|these) (?:answer|response|solution)s?"
    r"|\bscore (?:the|this|each) (?:answer|response|solution)\b|\bas a grader\b",
    "teacher_persona": r"\byou are an? (?:\w+ ){0,3}(?:teacher|tutor|professor|instructor"
    r"|expert explainer)\b|\bexplain (?:it )?(?:like|as if) (?:i am|to) a student\b",
}

# Keyword taxonomy of capabilities. Order matters on ties: the narrower capability first.
CATEGORY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "agentic_tool_use": (
        "tool call", "tools available", "function call", "call the tool", "api call",
        "next action", "observation", "json schema", "browse", "execute the command",
        "agent", "tool",
    ),
    "reasoning_puzzles": (
        "puzzle", "riddle", "knights and knaves", "logic grid", "must be true", "deduce",
        "brain teaser", "logic puzzle",
    ),
    "coding": (
        "python", "javascript", "typescript", "function", "code", "bug", "compile", "regex",
        "sql", "refactor", "unit test", "algorithm", "stack trace", "rust", "java", "class",
    ),
    "math": (
        "integral", "derivative", "equation", "prove", "theorem", "probability", "algebra",
        "calculate", "solve", "geometry", "matrix", "lemma", "polynomial", "math",
    ),
    "science": (
        "physics", "chemistry", "biology", "molecule", "experiment", "reaction", "enzyme",
        "quantum", "hypothesis",
    ),
    "summarise": ("summarise", "summarize", "summary", "tl dr", "key points", "shorten"),
    "translate": ("translate", "translation", "into french", "into spanish", "into german"),
    "classification": (
        "classify", "label", "sentiment", "categorise", "categorize", "which category",
        "tag this",
    ),
    "writing": (
        "essay", "poem", "story", "email", "blog post", "cover letter", "rewrite", "draft",
        "marketing copy", "slogan",
    ),
}
FALLBACK_CATEGORY = "chat"

_REASONING = {name: re.compile(pattern) for name, pattern in REASONING_RULES.items()}
_CATEGORY_OF = {kw: category for category, kws in CATEGORY_KEYWORDS.items() for kw in kws}
# One alternation, longest keywords first so "tool call" wins over "tool".
_KEYWORD = re.compile(
    r"\b(?:" + "|".join(re.escape(k) for k in sorted(_CATEGORY_OF, key=len, reverse=True))
    + r")\b"
)


@dataclass(frozen=True)
class Classification:
    """What the rules found in one template: its category and why, reasoning rules fired."""

    category: str
    category_rule: str
    elicits_reasoning: bool
    reasoning_rules: tuple[str, ...]


def classify(normalised: str) -> Classification:
    """Category and reasoning elicitation of one normalised template text.

    The category with the most distinct keyword hits wins (ties: the order of
    :data:`CATEGORY_KEYWORDS`); ``category_rule`` is its first keyword found, or
    ``"no keyword"`` for the ``chat`` fallback.

    Examples
    --------
    >>> c = classify("write a python function that parses qstr")
    >>> c.category, c.category_rule, c.elicits_reasoning
    ('coding', 'python', False)
    """
    hits: dict[str, list[str]] = {}
    for keyword in dict.fromkeys(_KEYWORD.findall(normalised)):
        hits.setdefault(_CATEGORY_OF[keyword], []).append(keyword)
    if hits:
        order = list(CATEGORY_KEYWORDS)
        category = max(hits, key=lambda c: (len(hits[c]), -order.index(c)))
        rule = hits[category][0]
    else:
        category, rule = FALLBACK_CATEGORY, "no keyword"
    fired = tuple(name for name, pattern in _REASONING.items() if pattern.search(normalised))
    return Classification(category, rule, bool(fired), fired)
