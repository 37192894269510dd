"""Show the source of a helper in a notebook, so a PDF reader sees the code that computed a result."""

from __future__ import annotations

import inspect
from pathlib import Path

from .config import PROJECT_ROOT


def source_lines(obj: object, start: str | None = None, stop: str | None = None) -> tuple[list[str], int, str]:
    """The source lines of a function, class or module, optionally cut to an excerpt.

    Args:
        obj: anything `inspect.getsourcelines` accepts.
        start: the excerpt begins at the first line containing this text (default: the first line).
        stop: the excerpt ends at the first line at or after `start` containing this text, inclusive
            (default: the last line).

    Returns:
        `(lines, first_line_number, path)`: the lines without trailing newlines, the 1-based number of the
        first one in its file, and the file's path relative to the project root where it lies inside it.
    """
    obj = inspect.unwrap(obj)  # a decorated function (e.g. @contextmanager): its own file and lines
    lines, first = inspect.getsourcelines(obj)
    first = max(first, 1)
    lines = [line.rstrip("\n") for line in lines]
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    begin, end = 0, len(lines)
    if start is not None:
        begin = next((i for i, line in enumerate(lines) if start in line), -1)
        if begin < 0:
            raise ValueError(f"{start!r} is not in the source of {name}; pass a text that occurs in one of its lines")
    if stop is not None:
        last = next((i for i in range(begin, len(lines)) if stop in lines[i]), -1)
        if last < 0:
            raise ValueError(f"{stop!r} does not occur in the source of {name} at or after the start line")
        end = last + 1
    path = Path(inspect.getsourcefile(obj) or "?").resolve()
    try:
        shown = path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        shown = path.name
    return lines[begin:end], first + begin, shown


def show_source(obj: object, start: str | None = None, stop: str | None = None):
    """The source of `obj` (or the excerpt from `start` to `stop`) as highlighted Markdown for a notebook.

    The object returned displays as a fenced Python block whose first line is a comment with its file and line
    numbers (inside the block, so a page break cannot part the two), highlighted in Jupyter and in the exported
    PDF alike. Arguments as in `source_lines`.
    """
    from IPython.display import Markdown

    lines, first, path = source_lines(obj, start, stop)
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    body = "\n".join(line[indent:] for line in lines)
    last = first + len(lines) - 1
    return Markdown(f"```python\n# {path}, lines {first}–{last}\n{body}\n```")
