"""The installer's one message catalogue: gettext files in locale/, one per language.

Why gettext and not a table in Python: argparse, which draws `safebox-install --help`
and its usage errors, speaks gettext itself ("usage:", "options", "the following
arguments are required"), so with our domain installed the whole screen is in one
language and nothing is patched; `ngettext` gives English its "1 device" / "2 devices"
while Chinese has one form (the Plural-Forms header of each file); and .po is the
format translators and their tools (Poedit, Weblate) already read. At run time only the
standard library's `gettext` is used; Babel (a development dependency) compiles the .po
files into the .mo files that are shipped, and a test checks that they match.

The msgid of each message is its name ("board_gone"), which the code and the tests use,
so English wording can change without touching code; argparse's own messages keep their
English msgids (they are argparse's), translated in zh_CN only.

  python -m safebox.tools.installer.catalogue compile    # after editing a .po file
"""

from __future__ import annotations

import contextlib
import functools
import gettext
import os
import sys
from collections.abc import Iterator
from pathlib import Path

DOMAIN = "safebox-install"
LOCALE_DIR = Path(__file__).resolve().with_name("locale")
GLOSSARY = LOCALE_DIR / "GLOSSARY.md"
# Our language codes -> gettext's folder names.
LOCALES = {"zh": "zh_CN", "en": "en"}


@functools.cache
def translations(lang: str) -> gettext.GNUTranslations:
    """The compiled catalogue of `lang` ("zh" or "en"); a missing file is a packaging error."""
    found = gettext.translation(DOMAIN, LOCALE_DIR, languages=[LOCALES[lang]])
    assert isinstance(found, gettext.GNUTranslations)
    return found


def po_path(lang: str) -> Path:
    return LOCALE_DIR / LOCALES[lang] / "LC_MESSAGES" / f"{DOMAIN}.po"


@contextlib.contextmanager
def speaking(lang: str) -> Iterator[None]:
    """Within this block, gettext's default domain (what argparse asks) answers in `lang`.

    argparse looks its words up with `gettext.gettext`, which reads the process's domain and
    the LANGUAGE variable; both are set here and put back afterwards, so a test that calls
    the command line in one process leaves nothing behind.
    """
    old_domain = gettext.textdomain()
    old_language = os.environ.get("LANGUAGE")
    gettext.bindtextdomain(DOMAIN, str(LOCALE_DIR))
    gettext.textdomain(DOMAIN)
    os.environ["LANGUAGE"] = LOCALES[lang]
    try:
        yield
    finally:
        gettext.textdomain(old_domain)
        if old_language is None:
            os.environ.pop("LANGUAGE", None)
        else:
            os.environ["LANGUAGE"] = old_language


def compiled(lang: str) -> bytes:
    """The .mo bytes Babel makes of the language's .po file (development only: needs Babel)."""
    import io

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po_path(lang).open("rb") as f:
        catalog = read_po(f, locale=LOCALES[lang], domain=DOMAIN)
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


def compile_all() -> list[Path]:
    written = []
    for lang in LOCALES:
        mo = po_path(lang).with_suffix(".mo")
        mo.write_bytes(compiled(lang))
        written.append(mo)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["compile"]:
        print("usage: python -m safebox.tools.installer.catalogue compile", file=sys.stderr)
        return 2
    for path in compile_all():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
