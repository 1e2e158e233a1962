"""The README and the pages of tools/docs/: the README fits one screen's worth of reading
(<= 200 lines) and opens with the front picture, every relative link resolves, its layout
names every package folder and tool there is, and .ci/run runs its install and test commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def section(text: str, heading: str) -> str:
    """The text under a ``## heading``, up to the next ``## ``."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def first_block(text: str, lang: str = "") -> str:
    block = re.search(rf"```{lang}\n(.*?)```", text, re.S)
    assert block, f"no ```{lang} block"
    return block.group(1)


def test_readme_is_at_most_200_lines_and_opens_with_the_front_picture():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    picture = re.search(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert picture and picture.group(1).endswith("front/front.png")
    assert text.index(picture.group(0)) < text.index("## ")  # before the first section
    assert (ROOT / picture.group(1)).is_file()


def test_every_relative_link_of_the_readme_and_the_docs_resolves():
    pages = [README, *sorted((ROOT / "tools" / "docs").glob("*.md"))]
    assert len(pages) > 5
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_readme_layout_names_every_package_folder_and_tool():
    layout = first_block(section(README.read_text(), "Layout"))
    folders = [
        f"hybridnas/{p.name}/"
        for p in (ROOT / "hybridnas").iterdir()
        if (p / "__init__.py").is_file()
    ]
    tools = [p.name for p in (ROOT / "tools").iterdir() if p.suffix == ".py"]
    tools += [f"{p.name}/" for p in (ROOT / "tools").iterdir() if p.is_dir() and p.name[0] != "_"]
    missing = [name for name in folders + tools if name not in layout]
    assert not missing, f"README layout does not name {missing}"


def test_ci_runs_the_readme_install_and_test_commands():
    text, ci = README.read_text(), (ROOT / ".ci" / "run").read_text()
    install = first_block(section(text, "Install"), "bash").strip()
    tests = first_block(section(text, "Tests"), "bash").splitlines()
    commands = [install, *(line.split("#")[0].strip() for line in tests if line.strip())]
    assert len(commands) == 3
    ci_lines = {line.strip() for line in ci.splitlines()}
    assert all(c in ci_lines for c in commands), commands
