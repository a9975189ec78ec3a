"""Problems the device side finds (a circle's validator, device.language), in English and ready
to be said in another language.

The runtime, `circlebox validate` and the doctor print a problem as it is: English. The admin page
says it in the reader's language (`local_admin.i18n.problem_text`): it translates the template
and fills in the fields. So the words live once, here in device/, marked with `N_` for
`pybabel extract` (babel.cfg), and the device side never needs Flask or Babel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def N_(text: str) -> str:
    """Marks a message template for `pybabel extract`; translated where it is shown."""
    return text


class Problem(str):
    """A problem's English text (what `str()` and every string operation give) that also carries
    its template ("%(name)s" fields) and fields, so a page can translate the template and then
    fill in the fields. Field values may be Problems or LanguageNames themselves: each is said
    in the reader's language too. Names, ids and numbers in fields stay as written."""

    template: str
    fields: Mapping[str, Any]

    def __new__(cls, template: str, **fields: Any) -> Problem:
        self = super().__new__(cls, template % fields if fields else template)
        self.template = template
        self.fields = fields
        return self


class LanguageName(str):
    """A language's English name in a problem ("Swahili") that remembers its code, so a page
    can name the language in the reader's own words."""

    code: str | None

    def __new__(cls, name: str, code: str | None) -> LanguageName:
        self = super().__new__(cls, name)
        self.code = code
        return self

    def __getnewargs__(self) -> tuple[str, str | None]:  # type: ignore[override]
        return (str(self), self.code)


class PromptName(str):
    """A prompt's English label in a problem ("Step 2 'share'") that remembers which prompt it
    is (its device.language.PromptInfo), so a page can name the prompt in the reader's words."""

    info: Any

    def __new__(cls, info: Any) -> PromptName:
        self = super().__new__(cls, info.label)
        self.info = info
        return self

    def __getnewargs__(self) -> tuple[Any]:  # type: ignore[override]
        return (self.info,)


__all__ = ["N_", "LanguageName", "Problem", "PromptName"]
